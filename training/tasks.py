"""Every downstream task of an experiment: methods + baselines on the same folds/users -> results.

For each task declared in the config (``cfg.tasks``):

* profile (P2): the baselines (majority, lr, lr_bal) and every method of ``extra.adapt.methods``
  on the five P2 folds, with full labels and (``low_label``) with 10% of each training fold;
* cross-domain (P3): the baselines (popularity, cooc, ridge) and every method on the P3 test users.

Every method reports through the protocol engineer's evaluation path (``evaluate_profile``,
``evaluate_cross_domain``), beside its trainable parameter count and training time, with paired
differences (per fold / per user) against the strongest baseline and against the adapter. Then one
final model per task (``extra.adapt.final_method``, on the *shared* backbone, trained on every
labelled / training user) is written to ``OUT/tasks/<task>/final.pt`` for export.

    results = run_tasks(cfg, dataset, "runs/ml100k/pretrain/best.pt", Path("runs/ml100k"))
    plot_results(results, Path("runs/ml100k"))

The encoder checkpoint of a P3 task must come from a pretraining that never saw the test users'
target events (``protocols.pretraining_mask``); P2 pretraining on every user's behaviour is allowed
but transductive (see PROTOCOLS.md).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import stats

from uservec.training.adapt import (
    AdaptSettings,
    Pretrained,
    TaskFit,
    adapt_settings,
    batched_forward,
    final_payload,
    load_pretrained,
)
from uservec.training.baselines import (
    PROFILE_METRICS,
    ProfileFold,
    evaluate_cross_domain,
    evaluate_profile,
    run_cross_domain_baselines,
    run_profile_baselines,
)
from uservec.training.checkpoint import save_checkpoint
from uservec.training.config import ExperimentConfig, TaskConfig
from uservec.training.cross_domain_task import (
    cross_domain_scorer,
    fit_cross_domain_task,
    source_inputs,
)
from uservec.training.data.dataset import PreparedDataset
from uservec.training.metrics import mean_se, mean_std, tie_break_order
from uservec.training.pretrain import torch_threads
from uservec.training.profile_task import (
    fit_profile_task,
    predict_profile_rules,
    profile_inputs,
)
from uservec.training.protocols import (
    LeakError,
    cross_domain_split,
    pretraining_view,
    profile_folds,
    profile_labels,
)

logger = logging.getLogger(__name__)

PROFILE_BASELINES: tuple[str, ...] = ("majority", "lr", "lr_bal")
CROSS_DOMAIN_BASELINES: tuple[str, ...] = ("popularity", "cooc", "ridge")
#: users whose outputs are fingerprinted to check that later tasks never change earlier ones
_PROBE_USERS = 64


def run_tasks(
    cfg: ExperimentConfig, dataset: PreparedDataset, encoder_checkpoint: str | Path, out_dir: Path
) -> dict[str, Any]:
    """Train and evaluate every task x method (module docstring); JSON-ready results.

    Returns ``{"settings", "encoder_checkpoint", "tasks": {name: result}, "no_forgetting",
    "seconds"}``. Task fits use ``pretrain.num_threads`` torch threads, like pretraining: with
    torch's default (one per core) runs sharing the cores oversubscribe them and spin-wait.
    """
    with torch_threads(cfg.pretrain.num_threads):
        return _run_tasks(cfg, dataset, encoder_checkpoint, out_dir)


def _run_tasks(
    cfg: ExperimentConfig, dataset: PreparedDataset, encoder_checkpoint: str | Path, out_dir: Path
) -> dict[str, Any]:
    started = time.perf_counter()
    settings = adapt_settings(cfg)
    shared = load_pretrained(encoder_checkpoint)
    check_encoder_view(shared, cfg, dataset, encoder_checkpoint)
    # evaluation fits start from this untouched copy; final models go onto ``shared.encoder``
    pristine = dataclasses.replace(shared, encoder=copy.deepcopy(shared.encoder))
    max_len = cfg.model.max_len
    results: dict[str, Any] = {
        "settings": dataclasses.asdict(settings),
        "encoder_checkpoint": str(encoder_checkpoint),
        "tasks": {},
    }
    probes: dict[str, tuple[Callable[[], torch.Tensor], torch.Tensor]] = {}
    for task in cfg.tasks:
        task_start = time.perf_counter()
        task_dir = Path(out_dir) / "tasks" / task.name
        if task.kind == "profile":
            result, final = run_profile_task(task, dataset, pristine, shared, settings, max_len,
                                             cfg.seed, task_dir)
        elif task.kind == "cross_domain":
            result, final = run_cross_domain_task(task, dataset, pristine, shared, settings,
                                                  max_len, cfg.seed, task_dir, cfg.eval.k)
        else:
            raise ValueError(f"task {task.name!r}: kind must be profile|cross_domain, "
                             f"got {task.kind!r}")
        probe = _output_probe(final, dataset, max_len)
        probes[task.name] = (probe, probe())
        result["seconds"] = round(time.perf_counter() - task_start, 1)
        results["tasks"][task.name] = result
        logger.info("task %s done in %.0fs", task.name, result["seconds"])
    results["no_forgetting"] = all(torch.equal(fn(), before) for fn, before in probes.values())
    if not results["no_forgetting"]:
        raise AssertionError("adding a task changed an earlier task's outputs")
    results["seconds"] = round(time.perf_counter() - started, 1)
    return results


def check_encoder_view(pretrained: Pretrained, cfg: ExperimentConfig, dataset: PreparedDataset,
                       checkpoint: str | Path) -> None:
    """Refuse an encoder that was not pretrained on this experiment's pretraining view.

    The split code guarantees that no task *head* reads a test user's hidden target events; the
    encoder is the other route in. One pretrained on the whole dataset (or on other data) has
    seen those events, so its P3 numbers would be leaked: its recorded dataset fingerprint must
    be the view's, which differs from the dataset's whenever events are hidden.
    """
    expected = pretraining_view(cfg, dataset).fingerprint
    recorded = pretrained.meta.get("dataset_fingerprint")
    if recorded != expected:
        raise LeakError(
            f"{checkpoint}: the encoder was pretrained on data with fingerprint {recorded!r}, "
            f"not on this experiment's pretraining view ({expected!r}, which hides every P3 "
            "target's held-out events); pretrain it with `uservec run` on this config"
        )


def _output_probe(fit: TaskFit, dataset: PreparedDataset, max_len: int
                  ) -> Callable[[], torch.Tensor]:
    """A function recomputing the final model's outputs on a few users (no-forgetting check)."""
    users = np.arange(min(_PROBE_USERS, dataset.num_users))
    if fit.split is not None:
        inputs = source_inputs(fit.split, users, max_len)
    else:
        inputs = profile_inputs(dataset, users, max_len)

    def probe() -> torch.Tensor:
        fit.network.eval()
        return batched_forward(fit.network, inputs)

    return probe


# --------------------------------------------------------------------------------------------
# P2
# --------------------------------------------------------------------------------------------


def run_profile_task(
    task: TaskConfig,
    dataset: PreparedDataset,
    pristine: Pretrained,
    shared: Pretrained,
    settings: AdaptSettings,
    max_len: int,
    seed: int,
    task_dir: Path,
) -> tuple[dict[str, Any], TaskFit]:
    """Baselines and methods in both label regimes, then the final model on every label."""
    if task.attribute is None:
        raise ValueError(f"profile task {task.name!r} needs an attribute")
    labels = profile_labels(dataset, task.attribute, task.buckets)
    names, counts = np.unique(labels.labels, return_counts=True)
    distribution = {str(c): int(counts[names == c].sum()) for c in labels.classes}
    result: dict[str, Any] = {
        "kind": "profile",
        "protocol": "P2",
        "attribute": task.attribute,
        "classes": labels.classes.tolist(),
        "label_distribution": distribution,
        "labelled_users": int(labels.users.size),
        "regimes": {},
    }
    regimes = {"full": False, **({"low_label": True} if task.low_label else {})}
    for regime, low_label in regimes.items():
        folds = profile_folds(labels.users, labels.labels, low_label=low_label)
        baselines = run_profile_baselines(dataset, task.attribute, task.buckets, low_label)
        methods: dict[str, Any] = dict(baselines["baselines"])
        for method in settings.methods:
            fits: list[dict[str, Any]] = []

            def predict(fold: ProfileFold, method: str = method,
                        fits: list[dict[str, Any]] = fits) -> dict[str, np.ndarray]:
                fit = fit_profile_task(method, pristine, dataset, fold.train_users,
                                       fold.train_labels, fold.classes, settings, max_len, seed,
                                       task.name)
                fits.append(fit.summary())
                return predict_profile_rules(fit, dataset, fold.test_users, max_len)

            evaluated = evaluate_profile(predict, labels, folds)
            methods[method] = _with_costs(evaluated, fits)
            logger.info("P2 %s %s %s: acc %.3f macro-F1 %.3f (%d params, %.0fs)", task.name,
                        regime, method, evaluated["accuracy"]["mean"],
                        evaluated["macro_f1"]["mean"], methods[method]["trainable_parameters"],
                        methods[method]["seconds"])
        result["regimes"][regime] = {
            "labelled_rows_per_fold": [int(f.train.size) for f in folds],
            "methods": methods,
            **profile_comparisons(methods, settings.methods),
        }
    final = fit_profile_task(settings.final_method, shared, dataset, labels.users, labels.labels,
                             labels.classes, settings, max_len, seed, task.name, shared=True)
    path = save_final(final, shared, task_dir, {
        "kind": "profile", "attribute": task.attribute,
        "buckets": None if task.buckets is None else list(task.buckets),
        "labels": labels.classes.tolist(), "max_len": max_len,
        "class_prior": None if final.class_prior is None else final.class_prior.tolist(),
        "prior_power": final.hyperparameters.class_weight,
    })
    result["final"] = {**final.summary(), "path": str(path),
                       "trained_on_users": int(labels.users.size)}
    return result, final


def _with_costs(evaluated: dict[str, Any], fits: list[dict[str, Any]]) -> dict[str, Any]:
    """Attach per-fold cost and chosen hyperparameters to an ``evaluate_profile`` result."""
    for row, fit in zip(evaluated["per_fold"], fits, strict=True):
        row.update({
            "trainable_parameters": fit["trainable_parameters"],
            "seconds": fit["seconds"],
            "hyperparameters": fit["hyperparameters"],
        })
    return {
        **evaluated,
        "trainable_parameters": fits[0]["trainable_parameters"],
        "encoder_parameters": fits[0]["encoder_parameters"],
        "seconds": round(sum(f["seconds"] for f in fits), 1),
        "seconds_per_fold": round(float(np.mean([f["seconds"] for f in fits])), 1),
    }


def paired_folds(a: list[float], b: list[float]) -> dict[str, Any]:
    """Per-fold differences a - b: mean ± sample std, wins, paired t-test p-value."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, std = mean_std(diff)
    return {
        "diff_mean": mean,
        "diff_std": std,
        "per_fold": diff.tolist(),
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
        "t_pvalue": _ttest(diff),
    }


def _ttest(diff: np.ndarray) -> float | None:
    """Two-sided paired t-test p-value of ``diff`` (None when undefined: n < 2 or no spread)."""
    if diff.size < 2 or np.allclose(diff, diff[0]):
        return None
    return float(stats.ttest_1samp(diff, 0.0).pvalue)


def per_fold(result: dict[str, Any], metric: str) -> list[float]:
    """Per-fold values of ``metric`` from an ``evaluate_profile``-shaped result."""
    return [row[metric] for row in result["per_fold"]]


def profile_comparisons(methods: dict[str, Any], neural: tuple[str, ...]) -> dict[str, Any]:
    """Strongest baseline per metric; every method vs it, and the adapter vs the others."""
    strongest = {
        metric: max(PROFILE_BASELINES, key=lambda name: methods[name][metric]["mean"])
        for metric in PROFILE_METRICS
    }
    vs_baseline = {
        method: {
            metric: {"vs": strongest[metric], **paired_folds(
                per_fold(methods[method], metric), per_fold(methods[strongest[metric]], metric)
            )}
            for metric in PROFILE_METRICS
        }
        for method in neural
    }
    out: dict[str, Any] = {"strongest_baseline": strongest, "paired_vs_baseline": vs_baseline}
    if "adapter" in neural:
        out["paired_adapter_vs"] = {
            other: {metric: paired_folds(per_fold(methods["adapter"], metric),
                                         per_fold(methods[other], metric))
                    for metric in PROFILE_METRICS}
            for other in neural if other != "adapter"
        }
    return out


# --------------------------------------------------------------------------------------------
# P3
# --------------------------------------------------------------------------------------------


def run_cross_domain_task(
    task: TaskConfig,
    dataset: PreparedDataset,
    pristine: Pretrained,
    shared: Pretrained,
    settings: AdaptSettings,
    max_len: int,
    seed: int,
    task_dir: Path,
    k: int = 10,
) -> tuple[dict[str, Any], TaskFit]:
    """Baselines and methods on the P3 test users; the final method's fit is the exported one.

    A P3 fit is already trained on every training user, so the final model is the evaluated
    model itself (fitted on the shared backbone).
    """
    if task.target_domain is None:
        raise ValueError(f"cross-domain task {task.name!r} needs a target_domain")
    split = cross_domain_split(dataset, task.target_domain)
    baselines = run_cross_domain_baselines(dataset, task.target_domain, k)
    methods: dict[str, Any] = dict(baselines["baselines"])
    per_user: dict[str, np.ndarray] = {
        name: np.asarray(methods[name]["per_user"][f"ndcg@{k}"]) for name in methods
    }
    final: TaskFit | None = None
    method_order = list(settings.methods)
    if settings.final_method not in method_order:
        method_order.append(settings.final_method)
    for method in method_order:
        is_final = method == settings.final_method
        fit = fit_cross_domain_task(method, shared if is_final else pristine, split, settings,
                                    max_len, seed, task.name, shared=is_final, k=k)
        if is_final:
            final = fit
        if method not in settings.methods:
            continue
        evaluated = evaluate_cross_domain(cross_domain_scorer(fit, max_len), split, k)
        per_user[method] = np.asarray(evaluated["per_user"][f"ndcg@{k}"])
        summary = fit.summary()
        methods[method] = {
            **evaluated,
            "trainable_parameters": summary["trainable_parameters"],
            "encoder_parameters": summary["encoder_parameters"],
            "seconds": summary["seconds"],
            "hyperparameters": summary["hyperparameters"],
            "tuning": summary["tuning"],
        }
        logger.info("P3 %s %s: NDCG@%d %.4f (%d params, %.0fs)", task.name, method, k,
                    evaluated[f"ndcg@{k}"]["mean"], summary["trainable_parameters"],
                    summary["seconds"])
    assert final is not None
    for entry in methods.values():
        entry.pop("per_user", None)
    metric = f"ndcg@{k}"
    strongest = max(CROSS_DOMAIN_BASELINES, key=lambda name: methods[name][metric]["mean"])
    neural = list(settings.methods)
    result: dict[str, Any] = {
        "kind": "cross_domain",
        "protocol": "P3",
        "target_domain": task.target_domain,
        "k": k,
        "split": split.summary(),
        "candidates": split.num_candidates,
        "methods": methods,
        "strongest_baseline": strongest,
        "paired_vs_baseline": {
            m: {metric: {"vs": strongest, **paired_users(per_user[m], per_user[strongest])}}
            for m in neural
        },
    }
    if "adapter" in neural:
        result["paired_adapter_vs"] = {
            other: {metric: paired_users(per_user["adapter"], per_user[other])}
            for other in neural if other != "adapter"
        }
    order = tie_break_order(split.popularity)
    path = save_final(final, shared, task_dir, {
        "kind": "cross_domain",
        "target_domain": task.target_domain,
        "candidate_keys": [str(key) for key in split.candidate_keys],
        "candidate_vocab_ids": torch.from_numpy(split.candidate_vocab_ids.astype(np.int64)),
        "candidate_popularity": torch.from_numpy(split.popularity.astype(np.int64)),
        "popularity_ranking": torch.from_numpy(order.astype(np.int64)),
        "max_len": max_len,
    })
    result["final"] = {**final.summary(), "path": str(path),
                       "trained_on_users": int(split.train_users.size)}
    return result, final


def paired_users(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """Per-user differences a - b: mean ± s.e., wins/losses/ties, paired t and Wilcoxon p."""
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mean, se = mean_se(diff) if diff.size else (math.nan, math.nan)
    wilcoxon = None
    if np.any(diff != 0):
        wilcoxon = float(stats.wilcoxon(diff, zero_method="wilcox").pvalue)
    return {
        "diff_mean": mean,
        "diff_se": se,
        "users": int(diff.size),
        "wins": int((diff > 0).sum()),
        "losses": int((diff < 0).sum()),
        "ties": int((diff == 0).sum()),
        "t_pvalue": _ttest(diff),
        "wilcoxon_pvalue": wilcoxon,
    }


# --------------------------------------------------------------------------------------------
# Final models and plots
# --------------------------------------------------------------------------------------------


def save_final(fit: TaskFit, shared: Pretrained, task_dir: Path, extra: dict[str, Any]) -> Path:
    """Write ``task_dir/final.pt`` (see :func:`training.adapt.final_payload`)."""
    path = Path(task_dir) / "final.pt"
    save_checkpoint(path, final_payload(fit, shared, extra))
    logger.info("saved %s", path)
    return path


def plot_results(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """Bar charts: metric per method per task (± spread), and low-label vs full label (P2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plot_dir = Path(out_dir) / "plots"
    plot_dir.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    low_vs_full: dict[str, dict[str, tuple[float, float]]] = {}
    for name, task in results["tasks"].items():
        if task["kind"] == "profile":
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            for ax, metric in zip(axes, PROFILE_METRICS, strict=True):
                regimes = task["regimes"]
                methods = list(regimes["full"]["methods"])
                width = 0.8 / len(regimes)
                x = np.arange(len(methods))
                for i, (regime, data) in enumerate(regimes.items()):
                    means = [data["methods"][m][metric]["mean"] for m in methods]
                    errors = [data["methods"][m][metric]["std"] for m in methods]
                    ax.bar(x + i * width, means, width, yerr=errors, label=regime, capsize=3)
                ax.set_xticks(x + width * (len(regimes) - 1) / 2, methods, rotation=30)
                ax.set_title(f"{name}: {metric} (mean ± std over folds)")
                ax.legend()
            if "low_label" in task["regimes"]:
                low_vs_full[name] = {
                    m: (task["regimes"]["full"]["methods"][m]["macro_f1"]["mean"],
                        task["regimes"]["low_label"]["methods"][m]["macro_f1"]["mean"])
                    for m in task["regimes"]["full"]["methods"]
                }
        else:
            metric = f"ndcg@{task['k']}"
            methods = list(task["methods"])
            fig, ax = plt.subplots(figsize=(6, 4))
            ax.bar(methods, [task["methods"][m][metric]["mean"] for m in methods],
                   yerr=[task["methods"][m][metric]["se"] for m in methods], capsize=3)
            ax.set_title(f"{name} ({task['target_domain']}): {metric} (mean ± s.e.)")
            ax.tick_params(axis="x", rotation=30)
        fig.tight_layout()
        path = plot_dir / f"{name}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    if low_vs_full:
        # One panel per task, one colour per method across panels (a legend, not text labels:
        # methods within a point of each other would print over one another); the diagonal is
        # "10% of the labels cost nothing".
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
        path = plot_dir / "low_label_vs_full.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths
