"""FAISS top-k with exclusions against brute-force numpy; popularity fallback; catalogue checks."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uservec.contract.manifest import BundleError
from uservec.service.engine import load_bundle
from uservec.service.retrieval import Catalogue


def make_catalogue(n: int, dim: int, seed: int) -> tuple[Catalogue, np.ndarray]:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    keys = tuple(f"games::g{i}" for i in range(n))
    return Catalogue("games", keys, index, popularity=keys[::-1]), vectors


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 50),
    seed=st.integers(0, 10_000),
    excluded_share=st.floats(0, 1),
)
def test_search_equals_brute_force_top_k_after_exclusion(n, k, seed, excluded_share):
    catalogue, vectors = make_catalogue(n, 6, seed)
    rng = np.random.default_rng(seed + 1)
    queries = rng.standard_normal((3, 6)).astype(np.float32)
    excluded = [
        {key for key in catalogue.keys if rng.random() < excluded_share} | {"games::not-there"}
        for _ in range(3)
    ]
    found = catalogue.search(queries, excluded, k)
    for query, skip, result in zip(queries, excluded, found, strict=True):
        scores = dict(zip(catalogue.keys, (vectors @ query).tolist(), strict=True))
        allowed = sorted((s for key, s in scores.items() if key not in skip), reverse=True)
        assert len(result) == min(k, len(allowed))
        assert not {key for key, _ in result} & skip
        # tie-robust: the scores returned are the best allowed scores, in order, and belong to
        # the keys returned
        np.testing.assert_allclose([s for _, s in result], allowed[:k], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose([s for _, s in result], [scores[key] for key, _ in result],
                                   rtol=1e-5, atol=1e-5)


def test_popular_skips_excluded_items_and_stops_at_k():
    catalogue, _ = make_catalogue(5, 4, 0)
    assert catalogue.popular({"games::g4", "games::g2"}, 2) == [("games::g3", None),
                                                                ("games::g1", None)]
    assert len(catalogue.popular(set(), 50)) == 5


def test_a_catalogue_with_keys_of_another_domain_is_refused_even_without_checksums(
    main_bundle, tmp_path
):
    """The service and `uservec bundle verify` share export.verify's catalogue rules."""
    copy = tmp_path / "b"
    shutil.copytree(main_bundle, copy)
    keys = json.loads((copy / "items/games.json").read_text())
    keys[0] = "books::intruder"
    (copy / "items/games.json").write_text(json.dumps(keys))
    with pytest.raises(BundleError, match="item keys outside domain 'games'"):
        load_bundle(copy, verify_checksums=False)
