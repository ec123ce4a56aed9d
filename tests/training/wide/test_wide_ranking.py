"""training.wide.ranking: the truncated ridge, its size budget and its out-of-fold scores."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from uservec.training.wide.ranking import (
    calibrate_temperature,
    fit_ranking_wide,
    full_ridge_scores,
    out_of_fold_scores,
    rank_for,
)


def _problem(n: int = 80, d: int = 30, c: int = 12, seed: int = 0):
    rng = np.random.default_rng(seed)
    bags = sp.csr_matrix((rng.random((n, d)) < 0.2).astype(np.float64))
    truth = rng.standard_normal((d, c))
    targets = sp.csr_matrix((bags @ truth > 0.8).astype(np.float64))
    return bags, targets, np.arange(d)


def test_full_rank_wide_part_equals_the_full_ridge():
    bags, targets, columns = _problem()
    wide = fit_ranking_wide(bags, targets, 3.0, columns)
    full = full_ridge_scores(bags, targets, 3.0, columns)
    np.testing.assert_allclose(wide.scores(bags), full(bags), atol=1e-8)


def test_wide_part_respects_the_byte_budget():
    bags, targets, columns = _problem()
    budget = 4 * (31 + 12) * 5  # room for rank 5
    wide = fit_ranking_wide(bags, targets, 3.0, columns, byte_budget=budget)
    assert wide.rank == 5
    assert wide.float32_bytes <= budget
    assert rank_for(31, 12, budget) == 5


def test_out_of_fold_scores_differ_from_in_sample_scores():
    bags, targets, columns = _problem()
    oof = out_of_fold_scores(bags, targets, 0.1, columns)
    in_sample = full_ridge_scores(bags, targets, 0.1, columns)(bags)
    in_fit = np.abs(in_sample - targets.toarray()).mean()
    out_fit = np.abs(oof - targets.toarray()).mean()
    assert out_fit > 1.5 * in_fit


def test_temperature_sharpens_informative_scores_only():
    targets = sp.csr_matrix(np.eye(6))
    noise = np.random.default_rng(0).normal(0, 1.0, (6, 6))
    sharp = calibrate_temperature(np.eye(6) + 0.1 * noise, targets)
    blurred = calibrate_temperature(np.eye(6) + noise, targets)
    assert sharp > blurred
