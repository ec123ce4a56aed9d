"""docs/results.md and the README's headline table, from the run reports."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from uservec.docs.formatting import (
    fmt,
    mean_of,
    metric_label,
    paired_folds,
    paired_users,
    pvalue,
    signed,
    slug,
    table,
    with_spread,
)
from uservec.docs.inputs import (
    GENERATED,
    HEADLINE_REGIMES,
    P2_BASELINES,
    P2_METRICS,
    P3_BASELINES,
    REPORTS_DIR,
    Inputs,
    lookup,
    stamp_of,
)


def _neural(methods: dict[str, Any], baselines: Sequence[str]) -> list[str]:
    return [name for name in methods if name not in baselines]


def _final_method(task: dict[str, Any], methods: dict[str, Any], baselines: Sequence[str]) -> str:
    """The served head when the report has one, else the method a task exports
    (``final.method``), else the first trained one."""
    if SERVED in methods:
        return SERVED
    final = lookup(task, "final", "method")
    if final in methods:
        return str(final)
    neural = _neural(methods, baselines)
    return neural[0] if neural else "-"


def _regimes(task: dict[str, Any]) -> dict[str, dict[str, Any]]:
    regimes = task.get("regimes")
    if isinstance(regimes, dict):
        return {name: body for name, body in regimes.items() if isinstance(body, dict)}
    return {"full": task} if "methods" in task else {}


def _regime_label(regime: str) -> str:
    named = {"full": "full labels", "low_label": "10% of the labels", "1.0": "full labels"}
    if regime in named:
        return named[regime]
    try:
        return f"{float(regime):.0%} of the labels"
    except ValueError:
        return regime.replace("_", " ")


def _tasks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    tasks = lookup(report, "tasks", "tasks")
    if not isinstance(tasks, dict):
        return {}
    return {name: task for name, task in tasks.items() if isinstance(task, dict)}


def _next_item(name: str, report: dict[str, Any]) -> list[str]:
    nxt = report.get("next_item")
    if not isinstance(nxt, dict):
        return []
    k = nxt.get("k", 10)
    rows = [[method, fmt(m.get(f"hr@{k}"), 4), fmt(m.get(f"ndcg@{k}"), 4),
             fmt(m.get("users"), 0)]
            for method, m in (nxt.get("methods") or {}).items() if isinstance(m, dict)]
    pre = report.get("pretrain") or {}
    return [f"### {name}: next item (P1)", "",
            f"{nxt.get('protocol', 'P1')}. NextItNet NDCG@{k} is "
            f"{fmt(nxt.get('ndcg_ratio_vs_popularity'), 2)}x popularity's; pretraining: "
            f"{fmt(pre.get('parameters'), 0)} parameters, best epoch "
            f"{fmt(pre.get('best_epoch'), 0)} of {fmt(pre.get('epochs_run'), 0)}.", "",
            *table(["method", f"HR@{k}", f"NDCG@{k}", "test users"], rows)]


#: the report row of the served head (wide, deep or wide+deep, chosen on validation users)
SERVED = "served"


def _method_label(method: str, served: Any) -> str:
    """``served (wide+deep)``: the served row names its kind; other rows their method."""
    if method != SERVED or not isinstance(served, dict):
        return method
    return f"{SERVED} ({served.get('kind', '?')})"


def _served_line(served: Any, digits: int) -> list[str]:
    """One sentence: the served kind, per-fold kinds, and each metric against its baseline."""
    if not isinstance(served, dict):
        return []
    parts = []
    for metric, versus in (served.get("vs_strongest_baseline") or {}).items():
        if isinstance(versus, dict):
            value = fmt(lookup(served, "metrics", metric), digits)
            parts.append(f"{metric_label(metric)} {value}"
                         f" vs {versus.get('baseline')} {fmt(versus.get('value'), digits)}: "
                         f"paired {signed(versus.get('paired_diff'), digits)}, "
                         f"ratio {fmt(versus.get('ratio'), 3)}")
    folds = served.get("per_fold_kinds")
    chosen = (f" (per fold: {', '.join(folds)})" if isinstance(folds, list) else "")
    return [f"Served head: `{served.get('kind')}`{chosen}, chosen on validation users only; "
            + "; ".join(parts) + ".", ""]


def _profile(name: str, task_name: str, task: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for regime, body in _regimes(task).items():
        methods = {m: r for m, r in (body.get("methods") or {}).items() if isinstance(r, dict)}
        strongest = body.get("strongest_baseline") or {}
        paired = body.get("paired_vs_baseline") or {}
        as_trained = any(lookup(r, "decisions", "as_trained") for r in methods.values())
        headers = ["method", "accuracy", "macro-F1",
                   *(f"{metric_label(m)} - {strongest.get(m, 'baseline')}" for m in P2_METRICS),
                   *(["accuracy, argmax as trained"] if as_trained else []),
                   "trainable params", "train s"]
        rows = []
        served = lookup(task, "served", regime) or body.get("served")
        for method, res in methods.items():
            rows.append([_method_label(method, served),
                         with_spread(res.get("accuracy"), "std", 3),
                         with_spread(res.get("macro_f1"), "std", 3),
                         *(paired_folds(lookup(paired, method, m)) for m in P2_METRICS),
                         *([with_spread(lookup(res, "decisions", "as_trained", "accuracy"),
                                        "std", 3)] if as_trained else []),
                         fmt(res.get("trainable_parameters"), 0), fmt(res.get("seconds"), 1)])
        classes = task.get("classes")
        lines += [f"### {name}: {task_name} (P2, {_regime_label(regime)})", "",
                  f"Attribute `{task.get('attribute', task_name)}`, "
                  f"{len(classes) if isinstance(classes, list) else '?'} classes, "
                  f"{fmt(task.get('labelled_users'), 0)} labelled users. Mean ± sample std over "
                  "the test folds; the difference columns are per-fold paired differences to the "
                  "strongest baseline of each metric.", "",
                  *table(headers, rows), *_served_line(served, 3)]
    return lines + _label_curve(name, task_name, task)


def _fraction(regime: str) -> float | None:
    try:
        return float(regime)
    except ValueError:
        return None


def _label_curve(name: str, task_name: str, task: dict[str, Any]) -> list[str]:
    """The label-efficiency curve as one table: a row per method, a column per labelled
    fraction, each cell accuracy / macro-F1 (means over the folds)."""
    regimes = sorted(((f, body) for regime, body in _regimes(task).items()
                      if (f := _fraction(regime)) is not None), key=lambda pair: pair[0])
    if len(regimes) < 3:
        return []
    methods = list(dict.fromkeys(m for _, body in regimes for m in body.get("methods") or {}))
    rows = [[method, *(f"{mean_of(lookup(body, 'methods', method, 'accuracy'), 3)} / "
                       f"{mean_of(lookup(body, 'methods', method, 'macro_f1'), 3)}"
                       if method in (body.get("methods") or {}) else "-"
                       for _, body in regimes)]
            for method in methods]
    skipped = task.get("skipped_regimes") or {}
    note = (f" Skipped (too few labelled rows for the classes): {', '.join(sorted(skipped))}."
            if skipped else "")
    return [f"### {name}: {task_name}, label efficiency (P2)", "",
            "Accuracy / macro-F1, mean over the test folds, with a share of each training fold "
            f"labelled.{note}", "",
            *table(["method", *(f"{f:.0%}" for f, _ in regimes)], rows)]


def _cross_domain(name: str, task_name: str, task: dict[str, Any]) -> list[str]:
    methods = {m: r for m, r in (task.get("methods") or {}).items() if isinstance(r, dict)}
    first = next(iter(methods.values()), {})
    order = ("ndcg", "recall", "hr")  # the main metric first, as the reports compare on it
    metrics = sorted((key for key in first if "@" in key),
                     key=lambda key: (order.index(key.split("@")[0])
                                      if key.split("@")[0] in order else len(order), key))
    ndcg = next((key for key in metrics if key.startswith("ndcg@")), "ndcg@10")
    base = task.get("strongest_baseline") or "baseline"
    paired = task.get("paired_vs_baseline") or {}
    served = lookup(task, "served", "1.0")
    rows = [[_method_label(method, served),
             *(with_spread(res.get(key), "se", 4) for key in metrics),
             paired_users(lookup(paired, method, ndcg)),
             fmt(res.get("trainable_parameters"), 0), fmt(res.get("seconds"), 1)]
            for method, res in methods.items()]
    return [f"### {name}: {task_name} (P3, into {task.get('target_domain', task_name)})", "",
            f"{fmt(task.get('candidates'), 0)} candidate items, "
            f"{fmt(first.get('evaluated_users'), 0)} test users "
            f"({fmt(first.get('left_out_users'), 0)} left out: no target item among the "
            "candidates). Mean ± standard error over test users; the difference column is the "
            "per-user paired difference to the strongest baseline.", "",
            *table(["method", *map(metric_label, metrics), f"{metric_label(ndcg)} - {base}",
                    "trainable params", "train s"], rows), *_served_line(served, 4),
            *_wide_line(task.get("wide"))]


def _wide_line(wide: Any) -> list[str]:
    """The truncated ridge's rank and size beside the full ridge's NDCG."""
    if not isinstance(wide, dict):
        return []
    return [f"Wide part: ridge (lambda {fmt(wide.get('lambda'), 3)}) truncated to rank "
            f"{fmt(wide.get('rank'), 0)} ({fmt((wide.get('float32_bytes') or 0) / 2**20, 1)} MiB "
            f"in float32): NDCG@10 {fmt(wide.get('ndcg'), 4)} vs the full ridge's "
            f"{fmt(wide.get('full_ridge_ndcg'), 4)}.", ""]


def _bundle(report: dict[str, Any]) -> list[str]:
    parity = lookup(report, "bundle", "parity")
    if not isinstance(parity, dict):
        return []
    worst = max((v for v in (lookup(parity, "fp32", "max_abs_diff") or {}).values()
                 if isinstance(v, float)), default=None)
    lines = [f"Bundle `{lookup(report, 'bundle', 'version')}`: onnxruntime vs torch max abs diff "
             f"{'-' if worst is None else f'{worst:.1e}'} over "
             f"{fmt(lookup(parity, 'fp32', 'n_sequences'), 0)} held-out sequences."]
    int8 = parity.get("int8")
    if isinstance(int8, dict):
        lines[0] += (f" int8: {'kept' if int8.get('accepted') else 'refused'}, "
                     f"{fmt(int8.get('speedup_vs_fp32'), 2)}x fp32 speed, user-vector cosine min "
                     f"{fmt(lookup(int8, 'user_vector_cosine', 'min'), 4)} ([int8](int8.md)).")
    return [*lines, ""]


def _peak_memory(report: dict[str, Any]) -> str:
    """", peak memory N MiB (in STAGE)" from ``memory.peak_rss_mb`` when the report has it."""
    peaks = lookup(report, "memory", "peak_rss_mb")
    if not isinstance(peaks, dict) or not peaks:
        return ""
    stage = max(peaks, key=lambda name: float(peaks[name]))
    return f", peak memory {peaks[stage]:.0f} MiB (in {stage})"


def report_section(name: str, report: dict[str, Any]) -> list[str]:
    """Every table of one report: P1, then each task and label regime, then the bundle."""
    ds = report.get("dataset") or {}
    lines = [f"## {name}", "",
             f"`uservec run` of config `{lookup(report, 'config', 'name') or name}` on "
             f"{ds.get('name', '?')} ({fmt(ds.get('users'), 0)} users, "
             f"{fmt(ds.get('items'), 0)} items, {fmt(ds.get('events'), 0)} events); "
             f"wall time {fmt(lookup(report, 'timings', 'total_s'), 1)} s"
             f"{_peak_memory(report)}.", "",
             stamp_of(report).line(), "",
             *(f"- {note}" for note in report.get("protocol_notes") or []), ""]
    lines += _next_item(name, report)
    for task_name, task in _tasks(report).items():
        render = _profile if task.get("kind") == "profile" else _cross_domain
        lines += render(name, task_name, task)
    forgetting = lookup(report, "tasks", "no_forgetting")
    if isinstance(forgetting, bool):
        lines += [f"Training one task left the other tasks' outputs bitwise unchanged "
                  f"(`no_forgetting`): {'yes' if forgetting else '**no**'}.", ""]
    return [*lines, *_bundle(report)]


def results_page(inputs: Inputs) -> str:
    names = ", ".join(f"`{REPORTS_DIR / name}.json`" for name in inputs.reports) or "no report"
    lines = ["# Results", "", GENERATED.format(inputs=f"`{REPORTS_DIR}/*.json`"), "",
             "Every table of every committed run report: next-item quality (P1), then each "
             "downstream task with every method beside the baselines (P2 profile prediction, P3 "
             "cross-domain cold start; [protocols](protocols.md)). Each section names the "
             "machine and commit that produced it: numbers from different CPUs differ "
             "([reproducibility](reproducibility.md)). Why the neural heads land where they do: "
             f"[analysis](analysis.md). Inputs: {names}.", ""]
    for name, report in inputs.reports.items():
        lines += report_section(name, report)
    return "\n".join(lines).rstrip() + "\n"


def _headline_diff(diff: Any, profile: bool) -> str:
    """The paired difference in brief: ``-0.008`` (P2, mean over folds), ``+0.0118 (p 0.044)``
    (P3)."""
    if not isinstance(diff, dict) or diff.get("diff_mean") is None:
        return "-"
    if profile:
        return signed(diff["diff_mean"], 3)  # folds won: docs/results.md
    return f"{signed(diff['diff_mean'], 4)} (p {pvalue(diff.get('wilcoxon_pvalue'))})"


def _headline_rows(name: str, report: dict[str, Any], neural: Sequence[str]) -> list[list[str]]:
    rows = []
    for task_name, task in _tasks(report).items():
        profile = task.get("kind") == "profile"
        for regime, body in _regimes(task).items():
            if regime not in HEADLINE_REGIMES:
                continue
            methods = body.get("methods") or {}
            final = _final_method(task, methods, P2_BASELINES if profile else P3_BASELINES)
            label = (task_name if regime in ("full", "1.0")
                     else f"{task_name}, {_regime_label(regime).replace(' of the labels', '')}")
            metrics = P2_METRICS if profile else tuple(
                k for k in next(iter(methods.values()), {}) if k.startswith("ndcg@"))
            digits = 3 if profile else 4
            for metric in metrics:
                base = (lookup(body, "strongest_baseline", metric) if profile
                        else body.get("strongest_baseline"))
                paired = lookup(body, "paired_vs_baseline", final, metric)
                rows.append([name, label, metric_label(metric),
                             f"{base} {mean_of(lookup(methods, str(base), metric), digits)}",
                             *(mean_of(lookup(methods, m, metric), digits) for m in neural),
                             final, _headline_diff(paired, profile)])
    return rows


def results_summary(inputs: Inputs) -> str:
    """The README's headline: P1 per run, then the main metric of every task, method by method
    (means only; the spreads are in docs/results.md)."""
    p1 = []
    for name, report in inputs.reports.items():
        methods = lookup(report, "next_item", "methods") or {}
        k = lookup(report, "next_item", "k") or 10
        p1.append([f"[{name}](docs/results.md#{slug(name)})",
                   fmt(lookup(methods, "nextitnet", f"ndcg@{k}"), 4),
                   fmt(lookup(methods, "popularity", f"ndcg@{k}"), 4),
                   fmt(lookup(report, "next_item", "ndcg_ratio_vs_popularity"), 1),
                   stamp_of(report).cpu])
    neural: list[str] = []
    for report in inputs.reports.values():
        for task in _tasks(report).values():
            for body in _regimes(task).values():
                baselines = P2_BASELINES if task.get("kind") == "profile" else P3_BASELINES
                # the README keeps the served row; its wide and wide+deep parts are in results.md
                neural += [m for m in _neural(body.get("methods") or {}, baselines)
                           if m not in neural and m not in ("wide", "wide+deep")]
    if SERVED in neural:  # the served head alone; every network is in results.md
        neural = [SERVED]
    rows = [row for name, report in inputs.reports.items()
            for row in _headline_rows(name, report, neural)]
    finals = {row[-2] for row in rows}
    if len(finals) == 1:  # one exported method everywhere: name it once, in the header
        diff = f"{finals.pop()} - baseline, paired"
        rows = [[*row[:-2], row[-1]] for row in rows]
    else:
        diff = "exported method - baseline, paired"
        rows = [[*row[:-2], f"{row[-2]} {row[-1]}"] for row in rows]
    other = sorted({regime for report in inputs.reports.values()
                    for task in _tasks(report).values() for regime in _regimes(task)}
                   - set(HEADLINE_REGIMES))
    return "\n".join([
        *table(["run", "NextItNet NDCG@10 (P1)", "popularity", "ratio", "CPU"], p1),
        *table(["run", "task", "metric", "strongest baseline", *neural, diff], rows),
        "Means. Spreads, every baseline" + (f", the other label regimes ({', '.join(other)})"
                                             if other else "")
        + " and the per-method paired differences: [docs/results.md](docs/results.md).",
    ]).rstrip()
