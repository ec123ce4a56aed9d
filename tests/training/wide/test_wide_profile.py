"""training.wide: the profile wide part reproduces the bag baselines and cross-fits honestly."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from uservec.training.baselines.logistic import fit_lr
from uservec.training.baselines.tfidf import tfidf_features
from uservec.training.wide.bag import BagTransform
from uservec.training.wide.profile import WideData, fit_logits


def _bags(n_users: int = 120, n_items: int = 40, seed: int = 0):
    """Binary bags where the class shifts which half of the items a user picks."""
    rng = np.random.default_rng(seed)
    codes = (rng.random(n_users) < 0.35).astype(np.int64)
    rows, cols = [], []
    for user, code in enumerate(codes):
        for _ in range(8):
            on_topic = rng.random() < 0.7
            low = 20 * code if on_topic else 0
            rows.append(user)
            cols.append(int(rng.integers(low, low + 20 if on_topic else n_items)))
    matrix = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_users, n_items))
    matrix.sum_duplicates()
    matrix.data[:] = 1.0
    return matrix, codes


def test_bag_transform_is_the_baselines_tfidf():
    matrix, _ = _bags()
    pool, users = np.arange(0, 90), np.arange(90, 120)
    expected, = tfidf_features(matrix, pool, users)
    got = BagTransform.fit(matrix[pool]).transform(matrix[users])
    np.testing.assert_allclose(got.toarray(), expected.toarray(), atol=1e-12)


def test_unweighted_wide_logits_are_the_lr_baselines_decisions():
    matrix, codes = _bags()
    bag = BagTransform.fit(matrix)
    x = bag.transform(matrix)
    weight, bias = fit_logits(x, codes, 2, power=0.0, c=1.0)
    model = fit_lr(x, codes, 1.0, None)
    np.testing.assert_array_equal((x @ weight.T + bias).argmax(1), model.predict(x))


def test_wide_fit_chooses_power_and_c_and_predicts_the_signal():
    matrix, codes = _bags()
    data = WideData(matrix, np.arange(120), np.arange(120), codes, 2, "mean")
    wide = data.fit(np.arange(90))
    assert wide.power in (0.0, 1.0)
    test = matrix[np.arange(90, 120)]
    accuracy = float((wide.logits(test).argmax(1) == codes[90:]).mean())
    assert accuracy > 0.75


def test_out_of_fold_logits_are_worse_than_in_sample_on_noise():
    """Random labels: a fit scores its own rows well (memorised), rows it never saw at chance."""
    matrix, _ = _bags(n_users=80, n_items=40)
    codes = np.random.default_rng(1).integers(0, 2, 80)
    data = WideData(matrix, np.arange(80), np.arange(80), codes, 2, "accuracy")
    rows = np.arange(80)
    wide = data.fit(rows)
    wide = type(wide)(wide.bag, *fit_logits(wide.bag.transform(matrix), codes, 2, 0.0, 10.0),
                      0.0, 10.0, wide.prior)
    in_sample = float((wide.logits(matrix).argmax(1) == codes).mean())
    out_of_fold = float((data.out_of_fold_logits(rows, wide).argmax(1) == codes).mean())
    assert in_sample > 0.8
    assert out_of_fold < 0.65
