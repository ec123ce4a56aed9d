"""The report's charts: a metric per method per task (± spread), and low-label vs full labels."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uservec.training.evaluation.cross_domain_results import CrossDomainTaskResult
from uservec.training.evaluation.kinds import PROFILE_METRICS
from uservec.training.evaluation.profile_results import ProfileTaskResult
from uservec.training.evaluation.results import TaskResults

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: per task, per method: (macro-F1 with full labels, macro-F1 with 10% of them)
LowVsFull = dict[str, dict[str, tuple[float, float]]]


def plot_results(results: TaskResults, out_dir: Path) -> list[Path]:
    """Bar charts of every task, and the low-label vs full-label chart; the written paths."""
    import matplotlib

    matplotlib.use("Agg")
    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    low_vs_full: LowVsFull = {}
    for name, task in results.tasks.items():
        if isinstance(task, CrossDomainTaskResult):
            figure = _cross_domain_bars(name, task)
        else:
            figure = _profile_bars(name, task)
            if "low_label" in task.regimes:
                low_vs_full[name] = _low_vs_full(task)
        paths.append(_save(figure, plot_dir / f"{name}.png"))
    if low_vs_full:
        paths.append(_save(_low_vs_full_figure(low_vs_full), plot_dir / "low_label_vs_full.png"))
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
        methods = list(regimes["full"].methods)
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


def _low_vs_full(task: ProfileTaskResult) -> dict[str, tuple[float, float]]:
    full, low = task.regimes["full"].methods, task.regimes["low_label"].methods
    return {m: (full[m].metric("macro_f1").mean, low[m].metric("macro_f1").mean) for m in full}


def _low_vs_full_figure(low_vs_full: LowVsFull) -> Figure:
    """One panel per task, one colour per method across panels.

    A legend, not text labels: methods within a point of each other would print over one
    another; the diagonal is "10% of the labels cost nothing".
    """
    import matplotlib.pyplot as plt

    methods = list(dict.fromkeys(m for points in low_vs_full.values() for m in points))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(low_vs_full), figsize=(4.5 * len(low_vs_full) + 1.5, 4),
                             squeeze=False)
    for ax, (task_name, points) in zip(axes[0], low_vs_full.items(), strict=True):
        for method, (full, low) in points.items():
            ax.scatter(full, low, color=colours[method], label=method, s=40)
        top = max(max(pair) for pair in points.values()) * 1.05
        ax.plot([0, top], [0, top], color="grey", linewidth=0.8, linestyle="--")
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel("macro-F1, full labels")
        ax.set_ylabel("macro-F1, 10% labels")
        ax.set_title(task_name)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="center right", fontsize=8)
    fig.suptitle("low-label vs full-label (mean over folds)")
    fig.tight_layout(rect=(0, 0, 1 - 1.5 / fig.get_figwidth(), 1))
    return fig
