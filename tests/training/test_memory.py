"""Peak memory per stage: an allocation shows in its own stage and in the stages around it."""

from __future__ import annotations

import numpy as np
import pytest

from uservec.training import memory

pytestmark = pytest.mark.skipif(memory.peak_source().startswith("process"),
                                reason="per-stage peaks need /proc/self/clear_refs (Linux)")

MIB = 1024 * 1024


def test_an_allocation_counts_in_its_stage_and_its_outer_stage_only():
    memory.reset_peaks()
    with memory.stage("outer"):
        with memory.stage("big"):
            block = np.ones(96 * MIB // 8)  # 96 MiB, touched
            del block
        with memory.stage("small"):
            np.ones(1024).sum()
    peaks = memory.peaks()
    assert peaks["big"] - peaks["small"] > 80  # the reset keeps "big" out of "small"
    assert peaks["outer"] >= peaks["big"]
    assert list(peaks) == ["big", "small", "outer"]
