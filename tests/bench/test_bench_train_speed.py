from __future__ import annotations

from uservec.bench.train_speed import BATCH_SIZE, run_train_speed


def test_quick_train_speed_has_one_positive_cell() -> None:
    result = run_train_speed(quick=True, seed=0)
    (row,) = result["rows"]
    assert row["seq_per_s"] > 0
    assert row["seq_per_s"] * row["ms_per_step"] / 1000 == __import__("pytest").approx(
        BATCH_SIZE)
