import numpy as np
import pytest

from uservec.export import indexes
from uservec.export.indexes import build_index, read_index, recall_at_k, search, write_index


def _clustered(n, d=16, clusters=40, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, d)).astype(np.float32) * 3
    labels = rng.integers(0, clusters, size=n)
    return centres[labels] + rng.standard_normal((n, d)).astype(np.float32) * 0.5


def _brute_force(xb, xq, k):
    scores = xq @ xb.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, axis=1), order


def test_exact_index_equals_numpy_top_k():
    xb, xq = _clustered(500), _clustered(30, seed=1)
    index, info = build_index(xb)
    assert info["kind"] == "flat" and info["recall_at_10"] == 1.0
    scores, rows = search(index, xq, 10)
    expected_scores, expected_rows = _brute_force(xb, xq, 10)
    np.testing.assert_array_equal(rows, expected_rows)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-5, atol=1e-4)


def test_k_larger_than_the_catalogue_returns_every_item():
    xb = _clustered(5)
    _, rows = search(build_index(xb)[0], xb[:2], 10)
    assert rows.shape == (2, 5) and sorted(rows[0].tolist()) == list(range(5))


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_index_measures_and_reaches_its_recall(kind, tmp_path):
    xb, xq = _clustered(4000), _clustered(100, seed=2)
    index, info = build_index(xb, kind=kind, queries=xq, target_recall=0.9)
    exact_rows = _brute_force(xb, xq, 10)[1]
    measured = recall_at_k(exact_rows, search(index, xq, 10)[1])
    assert info["kind"] == kind and info["recall_at_10"] == pytest.approx(measured)
    assert measured >= 0.9
    write_index(index, tmp_path / "x.faiss")
    reread = read_index(tmp_path / "x.faiss")  # search parameters travel with the file
    assert recall_at_k(exact_rows, search(reread, xq, 10)[1]) == pytest.approx(measured)


def test_auto_switches_to_ivf_above_the_exact_threshold(monkeypatch):
    monkeypatch.setattr(indexes, "EXACT_MAX_ITEMS", 1000)
    xb = _clustered(3000)
    assert build_index(xb[:1000])[1]["kind"] == "flat"
    _, info = build_index(xb)
    assert info["kind"] == "ivf" and info["params"]["nlist"] == indexes.ivf_nlist(3000)
    assert info["recall_at_10"] >= indexes.TARGET_RECALL


def test_ivf_lists_grow_with_the_catalogue():
    sizes = [indexes.ivf_nlist(n) for n in (10_000, 100_000, 1_000_000)]
    assert sizes == sorted(sizes) and sizes[-1] == 4000
