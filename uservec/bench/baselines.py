"""P3 baselines at scale: seconds and peak memory of popularity, cooc and ridge per dataset size.

The generated data (the demo's generator, scaled) has the shape a user reported the exact ridge
failing on: 32k users, 24k items, about a million events, two domains. At a middle size the exact
and the low-rank ridge both run, so the cost of the low-rank form is measured (NDCG@10 beside
the exact solve's) where the exact one still fits.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from uservec.training import memory
from uservec.training.baselines import ridge
from uservec.training.baselines.cross_domain import run_cross_domain_baselines
from uservec.training.data.prepare import prepare
from uservec.training.data.synthetic import generate_synthetic
from uservec.training.evaluation.cross_domain_split import cross_domain_split

logger = logging.getLogger(__name__)

#: (users, items, solvers) per size: "exact" forces the exact solve at any shape
SIZES: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (12_000, 9_000, ("exact", "by shape")),
    (32_000, 24_000, ("by shape",)),
)
QUICK_SIZES: tuple[tuple[int, int, tuple[str, ...]], ...] = ((300, 120, ("exact", "by shape")),)
TARGET_DOMAIN = "domain1"


def _one(split: Any, solver: str) -> dict[str, Any]:
    """Every P3 baseline on ``split`` with ``solver``; seconds, NDCG@10 and peak MiB each."""
    saved = ridge.EXACT_MAX
    if solver == "exact":
        ridge.EXACT_MAX = 10**9
    memory.reset_peaks()
    try:
        results = run_cross_domain_baselines(split)
    finally:
        ridge.EXACT_MAX = saved
    peaks = memory.peaks()
    return {name: {"seconds": result.seconds,
                   "ndcg_at_10": round(result.metric("ndcg").mean, 4),
                   "peak_rss_mb": peaks.get(f"p3 {TARGET_DOMAIN}: {name}")}
            for name, result in results.items()}


def run_baselines_bench(quick: bool) -> dict[str, Any]:
    """Rows of (size, solver) with each baseline's seconds, NDCG@10 and peak memory."""
    rows = []
    for users, items, solvers in QUICK_SIZES if quick else SIZES:
        started = time.perf_counter()
        dataset = prepare(generate_synthetic(users, items, 2, seed=0), name=f"synthetic-{users}")
        split = cross_domain_split(dataset, TARGET_DOMAIN)
        shape = split.source_matrix(split.train_users).shape
        logger.info("baselines bench: %d users, %d events, ridge design %s (%.0fs to build)",
                    users, dataset.num_events, shape, time.perf_counter() - started)
        for solver in solvers:
            rows.append({"users": users, "items": items, "events": int(dataset.num_events),
                         "train_users": int(shape[0]), "source_items": int(shape[1]),
                         "solver": solver, "baselines": _one(split, solver)})
    return {"rows": rows, "exact_max": ridge.EXACT_MAX, "low_rank": ridge.LOW_RANK,
            "target_domain": TARGET_DOMAIN}
