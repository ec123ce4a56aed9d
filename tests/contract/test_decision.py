"""uservec.decision: the prior shift both training and serving apply."""

import numpy as np

from uservec.contract.decision import DECISIONS, prior_shift


def test_prior_shift_is_power_times_log_prior_and_never_picks_an_unseen_label():
    shift = prior_shift([0.2, 0.8, 0.0], 0.5)
    np.testing.assert_allclose(shift[:2], 0.5 * np.log([0.2, 0.8]))
    assert shift[2] == -np.inf
    logits = np.array([0.0, 0.0, 100.0])
    assert int(np.argmax(logits + shift)) == 1  # the more frequent label; never the unseen one


def test_power_zero_leaves_seen_labels_alone():
    np.testing.assert_array_equal(prior_shift([0.5, 0.5], 0.0), [0.0, 0.0])
    assert DECISIONS == ("as_trained", "prior_adjusted")
