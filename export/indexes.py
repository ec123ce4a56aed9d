"""FAISS inner-product indexes over a recommendation head's item vectors (torch-free).

Exact search (``IndexFlatIP``) is the default: up to :data:`EXACT_MAX_ITEMS` items one query costs
well under a millisecond, and exact results need no recall caveat. Above it an IVF index is built
with ``nlist`` from the catalogue size, and ``nprobe`` is raised until recall@10 against exact
search, measured at build time on sample queries, reaches the target. The measured recall goes into
the manifest, so an approximate index never ships with an unknown quality.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

log = logging.getLogger(__name__)

#: catalogues up to this size get exact search under ``kind="auto"``
EXACT_MAX_ITEMS = 50_000
#: recall@10 vs exact that ``nprobe`` tuning aims for
TARGET_RECALL = 0.95
RECALL_K = 10
HNSW_M = 32

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, D) array, got shape {array.shape}")
    return array


def choose_kind(n_items: int) -> Literal["flat", "ivf"]:
    """Exact search for small catalogues, IVF above :data:`EXACT_MAX_ITEMS`."""
    return "flat" if n_items <= EXACT_MAX_ITEMS else "ivf"


def ivf_nlist(n_items: int) -> int:
    """About 4 sqrt(N) lists (FAISS guideline), with >= 39 training points per list."""
    return max(1, min(int(4 * math.sqrt(n_items)), n_items // 39))


def search(index: faiss.Index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by inner product: ``(scores (B, k), item rows (B, k))``, -1 rows where fewer exist."""
    xq = _as_float32(queries)
    scores, rows = index.search(xq, min(k, index.ntotal))
    return scores, rows


def recall_at_k(exact_rows: np.ndarray, approx_rows: np.ndarray) -> float:
    """Mean fraction of the exact top-k that the approximate top-k finds."""
    hits = [
        len(set(e) & set(a)) / max(1, len(e))
        for e, a in zip(exact_rows.tolist(), approx_rows.tolist(), strict=True)
    ]
    return float(np.mean(hits)) if hits else 1.0


def sample_queries(vectors: np.ndarray, n: int = 256, seed: int = 0) -> np.ndarray:
    """Stand-in queries when the caller has none: perturbed item vectors."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(vectors.shape[0], size=min(n, vectors.shape[0]), replace=False)
    noise = rng.standard_normal((rows.size, vectors.shape[1])).astype(np.float32)
    return vectors[rows] + noise * vectors.std(axis=0, keepdims=True)


def _tune_nprobe(index: faiss.IndexIVF, xq: np.ndarray, exact: np.ndarray, target: float) -> float:
    """Double ``nprobe`` until recall@k reaches ``target`` (or every list is probed)."""
    nprobe = 1
    while True:
        index.nprobe = nprobe
        recall = recall_at_k(exact, index.search(xq, exact.shape[1])[1])
        if recall >= target or nprobe >= index.nlist:
            return recall
        nprobe = min(nprobe * 2, index.nlist)


def build_index(
    vectors: np.ndarray,
    kind: IndexKind = "auto",
    queries: np.ndarray | None = None,
    target_recall: float = TARGET_RECALL,
    seed: int = 0,
) -> tuple[faiss.Index, dict[str, Any]]:
    """Index ``vectors`` (N, D) for inner-product search; ``info``: kind, params, recall@10."""
    xb = _as_float32(vectors)
    n, d = xb.shape
    kind = choose_kind(n) if kind == "auto" else kind
    info: dict[str, Any] = {"kind": kind, "n_items": n, "dim": d, "params": {}}
    if kind == "flat":
        index = faiss.IndexFlatIP(d)
        index.add(xb)
        info["recall_at_10"] = 1.0
        return index, info
    xq = _as_float32(queries) if queries is not None else sample_queries(xb, seed=seed)
    k = min(RECALL_K, n)
    exact = faiss.IndexFlatIP(d)
    exact.add(xb)
    exact_rows = exact.search(xq, k)[1]
    approximate: faiss.Index
    if kind == "ivf":
        nlist = ivf_nlist(n)
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.seed = seed
        ivf.train(xb)
        ivf.add(xb)
        recall = _tune_nprobe(ivf, xq, exact_rows, target_recall)
        info["params"] = {"nlist": nlist, "nprobe": int(ivf.nprobe)}
        approximate = ivf
    elif kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.add(xb)
        approximate = hnsw
        ef = k
        while True:
            hnsw.hnsw.efSearch = ef
            recall = recall_at_k(exact_rows, hnsw.search(xq, k)[1])
            if recall >= target_recall or ef >= n:
                break
            ef *= 2
        info["params"] = {"M": HNSW_M, "efSearch": int(ef)}
    else:
        raise ValueError(f"unknown index kind {kind!r}; use auto, flat, ivf or hnsw")
    info["recall_at_10"] = recall
    info["recall_queries"] = int(xq.shape[0])
    if recall < target_recall:
        log.warning("%s index reaches recall@%d %.3f < target %.2f", kind, k, recall, target_recall)
    log.info("built %s index over %d items: %s, recall@%d %.3f", kind, n, info["params"], k, recall)
    return approximate, info


def write_index(index: faiss.Index, path: str | Path) -> None:
    faiss.write_index(index, str(path))


def read_index(path: str | Path) -> faiss.Index:
    """Read an index written by :func:`write_index` (search parameters such as nprobe included)."""
    return faiss.read_index(str(path))
