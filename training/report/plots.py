"""The report's charts: a metric per method per task (± spread), and per profile task the
label-efficiency curves (each metric over the labelled fraction, a line per method)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uservec.training.evaluation.cross_domain_results import CrossDomainTaskResult
from uservec.training.evaluation.kinds import (
    FULL_REGIME,
    PROFILE_METRICS,
    ProfileMetric,
    regime_fraction,
)
from uservec.training.evaluation.profile_results import ProfileTaskResult
from uservec.training.evaluation.results import TaskResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: one method's label-efficiency curve: (labelled fractions, metric means)
Curve = tuple[list[float], list[float]]
#: drawn dashed: everything that is not a network
_BASELINE_NAMES = frozenset({"majority", "lr", "lr_bal", "lr_pooled", "lr_bal_pooled",
                             "svd_lr", "svd_lr_bal"})
#: the file of the label-efficiency chart
LABEL_CURVES = "label_efficiency.png"


def plot_results(results: TaskResults, out_dir: Path) -> list[Path]:
    """Bar charts of every task, and the label-efficiency curves; the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    curves: dict[str, ProfileTaskResult] = {}
    for name, task in results.tasks.items():
        if isinstance(task, CrossDomainTaskResult):
            figure = _cross_domain_bars(name, task)
        else:
            figure = _profile_bars(name, task)
            if len(task.regimes) > 1:
                curves[name] = task
        paths.append(_save(figure, plot_dir / f"{name}.png"))
    if curves:
        paths.append(_save(_label_curves_figure(curves), plot_dir / LABEL_CURVES))
    return paths


def _save(figure: Figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _profile_bars(name: str, task: ProfileTaskResult) -> Figure:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    regimes = task.regimes
    for ax, metric in zip(axes, PROFILE_METRICS, strict=True):
        methods = list(regimes[FULL_REGIME].methods)
        width = 0.8 / len(regimes)
        x = np.arange(len(methods))
        for i, (regime, body) in enumerate(regimes.items()):
            stats = [body.methods[m].metric(metric) for m in methods]
            ax.bar(x + i * width, [s.mean for s in stats], width,
                   yerr=[s.std for s in stats], label=regime, capsize=3)
        ax.set_xticks(x + width * (len(regimes) - 1) / 2, methods, rotation=30)
        ax.set_title(f"{name}: {metric} (mean ± std over folds)")
        ax.legend()
    fig.tight_layout()
    return fig


def _cross_domain_bars(name: str, task: CrossDomainTaskResult) -> Figure:
    import matplotlib.pyplot as plt

    methods = list(task.methods)
    stats = [task.methods[m].metric("ndcg") for m in methods]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar(methods, [s.mean for s in stats], yerr=[s.se for s in stats], capsize=3)
    ax.set_title(f"{name} ({task.target_domain}): {task.metric_key} (mean ± s.e.)")
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def label_curve(task: ProfileTaskResult, metric: ProfileMetric) -> dict[str, Curve]:
    """Per method: (fractions, means) over the task's regimes, in increasing fraction."""
    regimes = sorted(task.regimes.items(), key=lambda kv: regime_fraction(kv[0]))
    methods = list(dict.fromkeys(m for _, body in regimes for m in body.methods))
    curves: dict[str, Curve] = {}
    for method in methods:
        points = [(regime_fraction(name), body.methods[method].metric(metric).mean)
                  for name, body in regimes if method in body.methods]
        curves[method] = ([x for x, _ in points], [y for _, y in points])
    return curves


def _label_curves_figure(tasks: dict[str, ProfileTaskResult]) -> Figure:
    """One row per task, one panel per metric: a line per method over the labelled fraction.

    Baselines are dashed, networks solid, one colour per method across panels; the x axis is
    logarithmic because the regimes are (0.01, 0.05, 0.1, 0.25, 1.0).
    """
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(m for t in tasks.values() for r in t.regimes.values()
                                 for m in r.methods))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(len(tasks), len(PROFILE_METRICS), squeeze=False,
                             figsize=(11, 3.6 * len(tasks)))
    for row, (task_name, task) in zip(axes, tasks.items(), strict=True):
        for ax, metric in zip(row, PROFILE_METRICS, strict=True):
            for method, (xs, ys) in label_curve(task, metric).items():
                style = "--" if method in _BASELINE_NAMES else "-"
                ax.plot(xs, ys, style, marker="o", color=colours[method], label=method)
            ax.set_xscale("log")
            ax.set_xlabel("labelled fraction of each training fold")
            ax.set_title(f"{task_name}: {metric} (mean over folds)")
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1 - 1.8 / fig.get_figwidth(), 1))
    return fig
