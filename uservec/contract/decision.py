"""How a profile head's logits become a label: the contract shared by training and serving.

Profile heads are trained with class weights ``prior_c ** -power``, which tilts their posterior
toward rare classes: the argmax *as trained* suits balanced error (macro-F1). Adding
``power * log(prior)`` to the logits tilts it back (post-hoc logit adjustment, Menon et al.
2021): the *prior-adjusted* argmax is the ordinary posterior's, the accuracy-optimal rule, and its
softmax estimates the ordinary class probabilities. The training report scores accuracy with the
second rule and macro-F1 with the first; the service answers with either (``decision``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

Decision = Literal["as_trained", "prior_adjusted"]
DECISIONS: tuple[Decision, ...] = ("as_trained", "prior_adjusted")


def prior_shift(prior: Sequence[float] | np.ndarray, power: float) -> np.ndarray:
    """(C,) ``power * log(prior)``: what the prior-adjusted rule adds to the logits.

    Classes with prior 0 get ``-inf``: the head never saw them, so neither rule should pick them.
    """
    prior = np.asarray(prior, dtype=np.float64)
    shift = np.full(prior.shape, -np.inf)
    present = prior > 0
    shift[present] = power * np.log(prior[present])
    return shift
