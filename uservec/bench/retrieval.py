"""Retrieval at scale: exact inner-product search vs IVF and HNSW over a large catalogue.

Two catalogues of ``n_items`` x 64:
(a) realistic: item vectors sampled around real ones (the bundle's item vectors plus noise when a
    bundle with a recommendation head is given; otherwise a clustered Gaussian mixture with uneven
    cluster sizes, spreads and norms, the shape trained item tables have);
(b) worst case: i.i.d. standard Gaussian vectors (no structure for IVF or HNSW to exploit).
Queries come from the same distribution as the items, drawn independently. Parameters (``nprobe``,
``efSearch``) are tuned on one query set for recall@10 >= 0.95 and reported on another.
Speed: queries/s at batch 1 on one thread; build time (FAISS's own threads), serialized size.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.bench.common import ratio
from uservec.export.indexes import recall_at_k

logger = logging.getLogger(__name__)

DIM = 64
K = 10
TARGET_RECALL = 0.95
TARGET_SPEEDUP = 20.0
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40


def clustered_mixture(rng: np.random.Generator, n: int, d: int = DIM,
                      n_clusters: int = 1000) -> np.ndarray:
    """Gaussian mixture: Zipf-sized clusters, per-cluster spread, log-normal norms."""
    centers = rng.standard_normal((n_clusters, d)).astype(np.float32)
    sizes = 1.0 / np.arange(1, n_clusters + 1) ** 0.8
    members = rng.choice(n_clusters, size=n, p=sizes / sizes.sum())
    spread = rng.uniform(0.3, 0.7, size=n_clusters).astype(np.float32)
    noise = rng.standard_normal((n, d)).astype(np.float32)
    x = centers[members] + noise * spread[members, None]
    x *= rng.lognormal(0.0, 0.25, size=(n, 1)).astype(np.float32)
    return np.ascontiguousarray(x)


def around_vectors(rng: np.random.Generator, vectors: np.ndarray, n: int,
                   noise: float = 0.3) -> np.ndarray:
    """Resample real vectors with Gaussian noise of ``noise`` x their per-dimension spread."""
    rows = rng.integers(0, vectors.shape[0], size=n)
    spread = vectors.std(axis=0, keepdims=True)
    jitter = rng.standard_normal((n, vectors.shape[1])).astype(np.float32) * spread * noise
    return np.ascontiguousarray((vectors[rows] + jitter).astype(np.float32))


def _bundle_vectors(bundle: Path | None) -> np.ndarray | None:
    if bundle is None:
        return None
    from uservec.contract.manifest import read_manifest

    for task in read_manifest(bundle).tasks:
        if task.kind == "recommend" and task.items_file:
            return np.load(bundle / task.items_file).astype(np.float32)
    return None


def _qps(index: Any, xq: np.ndarray, max_seconds: float) -> float:
    """Queries/s of one-query searches (batch 1) on one thread."""
    done, start = 0, time.perf_counter()
    for row in range(xq.shape[0]):
        index.search(xq[row : row + 1], K)
        done += 1
        if time.perf_counter() - start > max_seconds:
            break
    return done / (time.perf_counter() - start)


def _size(index: Any) -> int:
    import faiss

    return int(faiss.serialize_index(index).nbytes)


def _tune(index: Any, param: str, values: list[int], xq: np.ndarray, exact: np.ndarray) -> int:
    """Smallest value of ``param`` reaching the target recall on the tuning queries."""
    import faiss

    space = faiss.ParameterSpace()
    for value in values:
        space.set_index_parameter(index, param, value)
        if recall_at_k(exact, index.search(xq, K)[1]) >= TARGET_RECALL:
            return value
    return values[-1]


def _single_thread_qps(index: Any, xq: np.ndarray, seconds: float) -> float:
    """Batch-1 queries per second on one thread (the serving case), then the threads restored."""
    import faiss

    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return _qps(index, xq, seconds)
    finally:
        faiss.omp_set_num_threads(threads)


def _ivf(xb: np.ndarray, seed: int) -> tuple[Any, dict[str, Any], float]:
    """An IVF-Flat index over ``xb`` (trained on a subsample), its parameters and build time."""
    import faiss

    n, d = xb.shape
    nlist = max(1, min(int(4 * math.sqrt(n)), n // 39))
    train_n = min(n, 40 * nlist)
    start = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.seed = seed
    rng = np.random.default_rng(seed)
    ivf.train(xb[rng.choice(n, size=train_n, replace=False)])
    ivf.add(xb)
    return ivf, {"nlist": nlist, "train_subsample": train_n}, time.perf_counter() - start


def _hnsw(xb: np.ndarray) -> tuple[Any, float]:
    """An HNSW-Flat index over ``xb`` and its build time."""
    import faiss

    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(xb.shape[1], HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    hnsw.add(xb)
    return hnsw, time.perf_counter() - start


def _row(name: str, index: Any, params: dict[str, Any], recall: float, qps: float,
         exact_qps: float, build_s: float) -> dict[str, Any]:
    return {"index": name, "params": params, "recall_at_10": recall, "qps_batch1": qps,
            "speedup_vs_exact": ratio(qps, exact_qps), "build_s": build_s,
            "size_mb": _size(index) / 2**20}


def bench_catalogue(name: str, xb: np.ndarray, xq_tune: np.ndarray, xq_eval: np.ndarray,
                    seed: int, quick: bool) -> dict[str, Any]:
    """Exact vs IVF vs HNSW on one catalogue."""
    import faiss

    n, d = xb.shape
    qps_seconds = 0.3 if quick else 6.0
    start = time.perf_counter()
    exact = faiss.IndexFlatIP(d)
    exact.add(xb)
    exact_build = time.perf_counter() - start
    truth_tune = exact.search(xq_tune, K)[1]
    truth_eval = exact.search(xq_eval, K)[1]
    exact_qps = _single_thread_qps(exact, xq_eval, qps_seconds)
    rows: list[dict[str, Any]] = [
        {"index": "exact (IndexFlatIP)", "params": {}, "recall_at_10": 1.0,
         "qps_batch1": exact_qps, "speedup_vs_exact": 1.0, "build_s": exact_build,
         "size_mb": _size(exact) / 2**20}]

    ivf, ivf_params, ivf_build = _ivf(xb, seed)
    nlist = ivf_params["nlist"]
    probes = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if p <= nlist] or [nlist]
    nprobe = _tune(ivf, "nprobe", probes, xq_tune, truth_tune)
    faiss.ParameterSpace().set_index_parameter(ivf, "nprobe", nprobe)
    rows.append(_row("IVF-Flat", ivf, {"nlist": nlist, "nprobe": nprobe,
                                       "train_subsample": ivf_params["train_subsample"]},
                     recall_at_k(truth_eval, ivf.search(xq_eval, K)[1]),
                     _single_thread_qps(ivf, xq_eval, qps_seconds), exact_qps, ivf_build))

    hnsw, hnsw_build = _hnsw(xb)
    ef = _tune(hnsw, "efSearch", [16, 32, 64, 128, 256, 512, 1024], xq_tune, truth_tune)
    faiss.ParameterSpace().set_index_parameter(hnsw, "efSearch", ef)
    rows.append(_row("HNSW-Flat", hnsw, {"M": HNSW_M, "efConstruction": HNSW_EF_CONSTRUCTION,
                                         "efSearch": ef},
                     recall_at_k(truth_eval, hnsw.search(xq_eval, K)[1]),
                     _single_thread_qps(hnsw, xq_eval, qps_seconds), exact_qps, hnsw_build))
    met = any(r["recall_at_10"] >= TARGET_RECALL and r["speedup_vs_exact"] >= TARGET_SPEEDUP
              for r in rows[1:])
    return {"catalogue": name, "n_items": n, "dim": d, "rows": rows, "target_met": met}


def run_retrieval(bundle: Path | None, quick: bool, seed: int,
                  n_items: int | None = None) -> dict[str, Any]:
    """Both catalogues; ``n_items`` defaults to 1M (5k in quick mode)."""
    n = n_items or (5_000 if quick else 1_000_000)
    n_queries = 200 if quick else 1000
    rng = np.random.default_rng(seed)
    real = _bundle_vectors(bundle)
    if real is not None:
        real = real[:, :DIM] if real.shape[1] >= DIM else real
        source = f"bundle item vectors ({real.shape[0]} x {real.shape[1]}) + 0.3 std noise"

        def realistic(count: int) -> np.ndarray:
            return around_vectors(rng, real, count)
    else:
        source = "clustered Gaussian mixture (1000 Zipf-sized clusters, log-normal norms)"
        pool = clustered_mixture(rng, n + 2 * n_queries)

    dim = real.shape[1] if real is not None else DIM
    catalogues = []
    for name in tqdm(("realistic", "iid_gaussian"), desc="retrieval", leave=False):
        if name == "realistic":
            if real is None:
                order = rng.permutation(pool.shape[0])
                xb = np.ascontiguousarray(pool[order[:n]])
                xq_tune = np.ascontiguousarray(pool[order[n : n + n_queries]])
                xq_eval = np.ascontiguousarray(pool[order[n + n_queries :]])
            else:
                xb, xq_tune, xq_eval = realistic(n), realistic(n_queries), realistic(n_queries)
        else:
            xb = rng.standard_normal((n, dim)).astype(np.float32)
            xq_tune = rng.standard_normal((n_queries, dim)).astype(np.float32)
            xq_eval = rng.standard_normal((n_queries, dim)).astype(np.float32)
        catalogues.append(bench_catalogue(name, xb, xq_tune, xq_eval, seed, quick))
        del xb
    return {"realistic_source": source, "queries": n_queries, "k": K,
            "target": {"recall_at_10": TARGET_RECALL, "speedup_vs_exact": TARGET_SPEEDUP,
                       "met_on_realistic": catalogues[0]["target_met"]},
            "catalogues": catalogues}
