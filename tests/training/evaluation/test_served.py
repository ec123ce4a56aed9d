"""training.evaluation.served: the served-kind rule and the served block of report.json."""

from __future__ import annotations

import pytest

from uservec.training.evaluation.served import (
    choose_kind,
    most_common_kind,
    served_block,
)


def test_choose_kind_takes_the_best_validation_score():
    assert choose_kind({"wide": 0.70, "deep": 0.75, "wide+deep": 0.72}) == "deep"
    assert choose_kind({"wide": 0.70, "deep": 0.60, "wide+deep": 0.72}) == "wide+deep"


def test_choose_kind_prefers_wide_within_the_margin_and_on_ties():
    assert choose_kind({"wide": 0.70, "deep": 0.70, "wide+deep": 0.70}) == "wide"
    assert choose_kind({"wide": 0.70, "wide+deep": 0.72}, margin=0.05) == "wide"
    assert choose_kind({"wide": 0.70, "wide+deep": 0.80}, margin=0.05) == "wide+deep"
    with pytest.raises(ValueError):
        choose_kind({})


def test_most_common_kind():
    assert most_common_kind(["deep", "wide", "deep"]) == "deep"
    assert most_common_kind(["deep", "wide"]) == "wide"


def test_served_block_schema_and_paired_difference():
    block = served_block(
        "wide", {"accuracy": [0.8, 0.6]},
        {"lr": {"accuracy": [0.7, 0.7]}, "majority": {"accuracy": [0.5, 0.5]}},
        {"accuracy": "lr"}, ["wide", "wide"]).to_json()
    assert set(block) == {"kind", "metrics", "vs_strongest_baseline", "per_fold_kinds"}
    assert block["kind"] == "wide"
    assert block["metrics"] == {"accuracy": pytest.approx(0.7)}
    versus = block["vs_strongest_baseline"]["accuracy"]
    assert set(versus) == {"baseline", "value", "paired_diff", "ratio"}
    assert versus["baseline"] == "lr"
    assert versus["value"] == pytest.approx(0.7)
    assert versus["paired_diff"] == pytest.approx(0.0)
    assert versus["ratio"] == pytest.approx(1.0)
