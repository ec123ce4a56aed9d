"""The markdown table ``uservec probe`` prints."""

from __future__ import annotations

from uservec.training.probe.cross_domain import RankingProbeRow
from uservec.training.probe.profile import ProbeRow
from uservec.training.probe.run import ProbeReport


def probe_table(report: ProbeReport) -> str:
    """Markdown: profile tasks (one row per readout; ``tfidf+…`` rows add their gain over
    ``tfidf``), then cross-domain tasks (``ridge`` and ``ridge-on-…`` with per-user gains)."""
    lines = []
    if report.tasks:
        lines += ["| task | readout | lr accuracy | lr_bal macro-F1 | "
                  "minus tfidf, per fold (wins) |", "|---|---|---|---|---|"]
    regimes = list(report.tasks.items())
    regimes += [(f"{task}, 10% labels", rows)
                for task, rows in (report.tasks_low_label or {}).items()]
    for task, rows in regimes:
        lines += [_profile_row(task, readout, row) for readout, row in rows.items()]
    if report.cross_domain:
        if lines:
            lines.append("")
        lines += ["| task | model | NDCG@10 | Recall@10 | lambda | minus ridge, per user "
                  "(wins/losses, Wilcoxon p) |", "|---|---|---|---|---|---|"]
    for task, models in report.cross_domain.items():
        lines += [_ranking_row(task, name, row) for name, row in models.items()]
    return "\n".join(lines)


def _profile_row(task: str, readout: str, row: ProbeRow) -> str:
    acc, f1 = row.summary("lr_accuracy"), row.summary("lr_bal_macro_f1")
    gain = ""
    if row.minus_tfidf is not None:
        gain = " / ".join(f"{d.diff_mean:+.3f} ({d.wins}/{len(d.per_fold)})"
                          for d in (row.minus_tfidf["lr_accuracy"],
                                    row.minus_tfidf["lr_bal_macro_f1"]))
    return (f"| {task} | {readout} | {acc.mean:.3f} ± {acc.std:.3f} | "
            f"{f1.mean:.3f} ± {f1.std:.3f} | {gain} |")


def _ranking_row(task: str, name: str, row: RankingProbeRow) -> str:
    gain = ""
    if row.minus_ridge is not None:
        d = row.minus_ridge
        gain = f"{d.diff_mean:+.4f} ({d.wins}/{d.losses}, p {_p(d.wilcoxon_pvalue)})"
    ndcg, recall = row.evaluation.summary("ndcg"), row.evaluation.summary("recall")
    return (f"| {task} | {name} | {ndcg.mean:.4f} ± {ndcg.se:.4f} | {recall.mean:.4f} | "
            f"{row.lam:g} | {gain} |")


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"
