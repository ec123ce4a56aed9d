"""Numbers, statistics and tables as the generated pages write them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any


def fmt(value: Any, digits: int) -> str:
    """A number with ``digits`` decimals (integers with thousands separators); missing: "-"."""
    if isinstance(value, bool) or value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def with_spread(stat: Any, spread: str, digits: int) -> str:
    """``mean ± spread`` of a ``{"mean", "std"|"se"}`` entry; a bare number as it is."""
    if isinstance(stat, dict):
        mean, err = stat.get("mean"), stat.get(spread)
        if isinstance(err, float):
            return f"{fmt(mean, digits)} ± {err:.{digits}f}"
        return fmt(mean, digits)
    return fmt(stat, digits)


def mean_of(stat: Any, digits: int) -> str:
    """The mean of a ``{"mean", ...}`` entry, or a bare number."""
    return fmt(stat.get("mean") if isinstance(stat, dict) else stat, digits)


def metric_label(key: str) -> str:
    """A metric key as the docs write it: ``macro_f1`` -> ``macro-F1``, ``ndcg@10`` ->
    ``NDCG@10``."""
    name, at, k = key.partition("@")
    labels = {"macro_f1": "macro-F1", "ndcg": "NDCG", "recall": "Recall", "hr": "HR"}
    return labels.get(name, name) + at + k


def signed(value: Any, digits: int) -> str:
    """A difference with its sign."""
    return f"{value:+.{digits}f}" if isinstance(value, float | int) else "-"


def pvalue(value: Any) -> str:
    """A p-value to two significant digits."""
    return f"{value:.2g}" if isinstance(value, float) else "-"


def paired_folds(diff: Any) -> str:
    """A per-fold paired difference (P2): ``-0.008 ± 0.012 (won 1/5, p 0.23)``."""
    if not isinstance(diff, dict) or diff.get("diff_mean") is None:
        return "-"
    folds = len(diff.get("per_fold") or []) or "?"
    spread = diff.get("diff_std")
    text = signed(diff["diff_mean"], 3)
    if isinstance(spread, float):
        text += f" ± {spread:.3f}"
    return f"{text} (won {fmt(diff.get('wins'), 0)}/{folds}, p {pvalue(diff.get('t_pvalue'))})"


def paired_users(diff: Any) -> str:
    """A per-user paired difference (P3): ``-0.0014 ± 0.0050 (Wilcoxon p 0.4; won 54, lost 58)``."""
    if not isinstance(diff, dict) or diff.get("diff_mean") is None:
        return "-"
    spread = diff.get("diff_se")
    text = signed(diff["diff_mean"], 4)
    if isinstance(spread, float):
        text += f" ± {spread:.4f}"
    return (f"{text} (Wilcoxon p {pvalue(diff.get('wilcoxon_pvalue'))}; won "
            f"{fmt(diff.get('wins'), 0)}, lost {fmt(diff.get('losses'), 0)})")


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """A markdown table as lines, followed by a blank line."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return [*lines, *("| " + " | ".join(row) + " |" for row in rows), ""]


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link counts as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
