from __future__ import annotations

import numpy as np
import pytest

from uservec.bench.retrieval import around_vectors, clustered_mixture, run_retrieval


def test_mixture_and_resampling_shapes() -> None:
    rng = np.random.default_rng(0)
    x = clustered_mixture(rng, 500, 8, n_clusters=10)
    assert x.shape == (500, 8) and x.dtype == np.float32
    y = around_vectors(rng, x, 50)
    assert y.shape == (50, 8)


def test_quick_retrieval_compares_each_index_with_exact_search() -> None:
    result = run_retrieval(None, quick=True, seed=0, n_items=3000)
    assert [c["catalogue"] for c in result["catalogues"]] == ["realistic", "iid_gaussian"]
    for catalogue in result["catalogues"]:
        exact, *approx = catalogue["rows"]
        assert exact["recall_at_10"] == 1.0 and exact["speedup_vs_exact"] == 1.0
        assert [r["index"] for r in approx] == ["IVF-Flat", "HNSW-Flat"]
        for row in approx:
            assert 0.0 <= row["recall_at_10"] <= 1.0
            assert row["speedup_vs_exact"] == pytest.approx(
                row["qps_batch1"] / exact["qps_batch1"])
            assert row["size_mb"] > 0 and row["build_s"] >= 0
        assert catalogue["target_met"] == any(
            r["recall_at_10"] >= 0.95 and r["speedup_vs_exact"] >= 20 for r in approx)
