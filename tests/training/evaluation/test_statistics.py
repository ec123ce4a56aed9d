import math

import numpy as np
import pytest

from uservec.training.evaluation.statistics import (
    MeanSe,
    mean_se,
    mean_std,
    paired_folds,
    paired_users,
)


def test_spread_helpers():
    mean, std = mean_std([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5
    assert std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    mean, se = mean_se([1.0, 2.0, 3.0, 4.0])
    assert se == pytest.approx(std / 2)
    assert mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError):
        mean_std([])
    assert all(math.isnan(v) for v in MeanSe.of([]).to_json().values())


def test_paired_folds_statistics():
    paired = paired_folds([0.8, 0.7, 0.9], [0.7, 0.7, 0.6])
    assert paired.per_fold == pytest.approx([0.1, 0.0, 0.3])
    assert paired.diff_mean == pytest.approx(0.4 / 3)
    assert paired.diff_std == pytest.approx(np.std([0.1, 0.0, 0.3], ddof=1))
    assert (paired.wins, paired.losses) == (2, 0)
    assert paired.t_pvalue is not None and 0.0 < paired.t_pvalue < 1.0
    assert paired_folds([0.5, 0.5], [0.5, 0.5]).t_pvalue is None
    assert list(paired.to_json()) == ["diff_mean", "diff_std", "per_fold", "wins", "losses",
                                      "t_pvalue"]


def test_paired_users_statistics():
    a, b = np.array([1.0, 0.5, 0.0, 0.2]), np.array([0.5, 0.5, 0.1, 0.0])
    paired = paired_users(a, b)
    assert paired.diff_mean == pytest.approx(0.15)
    assert paired.diff_se == pytest.approx(np.std(a - b, ddof=1) / 2)
    assert (paired.wins, paired.losses, paired.ties) == (2, 1, 1)
    assert paired.wilcoxon_pvalue is not None
    assert paired_users(a, a).wilcoxon_pvalue is None
    assert list(paired.to_json()) == ["diff_mean", "diff_se", "users", "wins", "losses", "ties",
                                      "t_pvalue", "wilcoxon_pvalue"]
