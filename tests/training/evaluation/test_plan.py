"""The evaluation plan: every split made once, before training, or a clear reason why not."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_helpers import build_dataset, random_cross_domain

from uservec.training.config import ConfigError, EvalConfig, ExperimentConfig, TaskConfig
from uservec.training.evaluation.errors import InfeasibleEvaluation
from uservec.training.evaluation.plan import EvaluationPlan, plan_evaluation, pretraining_view
from uservec.training.evaluation.profile_split import holdout_split, profile_folds

#: issue 22 item 7: a generic CSV of 300 users, age in buckets [25, 35, 45, 55]
AGE_BUCKETS = (25.0, 35.0, 45.0, 55.0)


def users_with(attributes: dict[str, list[object]], events_per_user: int = 6):
    """A one-domain dataset of ``len(values)`` users with the given attribute columns."""
    num_users = len(next(iter(attributes.values())))
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(attributes, index=np.arange(1, num_users + 1))
    events = [(u, int(i)) for u in frame.index for i in rng.integers(0, 40, events_per_user)]
    user_ids, item_ids = zip(*events, strict=True)
    return build_dataset(user_ids, item_ids, users=frame)


def ages(num_users: int) -> list[object]:
    return list(np.random.default_rng(1).integers(15, 70, num_users))


def config(*tasks: TaskConfig) -> ExperimentConfig:
    return ExperimentConfig(name="plan", tasks=tasks)


def test_the_issue_22_age_task_skips_only_the_regimes_too_small_for_its_classes():
    """Before: ValueError 'test_size = 4 should be greater or equal to the number of classes =
    5' from the low-label holdout, after pretraining. Now: planned; 1% of 240 rows (2 rows for
    5 classes) is skipped and says why; 5% and 10% validate on an unstratified holdout."""
    dataset = users_with({"age": ages(300)})
    task = TaskConfig("age", "profile", attribute="age", buckets=AGE_BUCKETS)
    plan = plan_evaluation(config(task), dataset)
    split = plan.profile["age"]
    assert list(split.regimes) == ["0.05", "0.1", "0.25", "1.0"]
    reason = split.skipped["0.01"]
    assert "2 rows, fewer than the 5 classes" in reason
    assert "240 labelled users (<25 " in reason  # the class counts of the failing rows
    assert "To evaluate it: label more users" in reason  # and what to change
    # the full regime is the protocol's, with the holdout task training will draw
    folds = profile_folds(split.labels.users, split.labels.labels)
    for fold, planned, holdout in zip(folds, split.regimes["1.0"].folds,
                                      split.regimes["1.0"].holdouts, strict=True):
        assert np.array_equal(fold.train, planned.train)
        assert np.array_equal(holdout.test, holdout_split(split.labels.codes()[fold.train],
                                                          0.15).test)
    # the 10% regime is the protocol's low-label split
    low = profile_folds(split.labels.users, split.labels.labels, low_label=True)
    assert all(np.array_equal(a.train, b.train)
               for a, b in zip(low, split.regimes["0.1"].folds, strict=True))


def test_every_regime_that_can_be_made_is_kept_and_low_label_false_keeps_only_1():
    dataset = users_with({"age": ages(1000)})
    task = TaskConfig("age", "profile", attribute="age", buckets=AGE_BUCKETS)
    split = plan_evaluation(config(task), dataset).profile["age"]
    assert list(split.regimes) == ["0.01", "0.05", "0.1", "0.25", "1.0"] and not split.skipped
    sizes = [split.regimes[r].folds[0].train.size for r in split.regimes]
    assert sizes == [8, 40, 80, 200, 800]
    only_full = TaskConfig("age", "profile", attribute="age", buckets=AGE_BUCKETS,
                           low_label=False)
    assert list(plan_evaluation(config(only_full), dataset).profile["age"].regimes) == ["1.0"]


def test_the_regime_set_is_a_config_key_that_must_hold_1():
    dataset = users_with({"gender": list("MF" * 100)})
    cfg = ExperimentConfig(name="plan", tasks=(TaskConfig("g", "profile", attribute="gender"),),
                           eval=EvalConfig(label_fractions=(0.5, 1.0)))
    assert list(plan_evaluation(cfg, dataset).profile["g"].regimes) == ["0.5", "1.0"]
    with pytest.raises(ConfigError, match=r"must include 1\.0"):
        EvalConfig(label_fractions=(0.1, 0.5))
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        EvalConfig(label_fractions=(0.0, 1.0))


@pytest.mark.parametrize(("values", "expected"), [
    (["M"] * 40, "fewer than two classes"),
    (["M", "F", "M", "F"] + [None] * 36, "too few for 5 stratified folds"),
    (["M", "F", "X", "Y", "Z"] * 5, "hold out a stratified 15%"),
])
def test_a_profile_task_that_cannot_be_evaluated_stops_naming_task_counts_and_fix(values,
                                                                                  expected):
    dataset = users_with({"gender": values})
    with pytest.raises(InfeasibleEvaluation) as caught:
        plan_evaluation(config(TaskConfig("sex", "profile", attribute="gender")), dataset)
    message = str(caught.value)
    assert message.startswith("cannot evaluate task 'sex' (attribute 'gender')")
    assert expected in message and "Fix:" in message
    assert "M " in message  # class counts, e.g. "M 40"


def test_a_missing_attribute_or_target_domain_stops_before_training():
    dataset = random_cross_domain(num_users=80)
    with pytest.raises(InfeasibleEvaluation, match="no user attribute 'age'"):
        plan_evaluation(config(TaskConfig("a", "profile", attribute="age")), dataset)
    unknown = r"task 'x' \(cross-domain into 'X'\): .* has no domain 'X'.* Fix: set target_domain"
    with pytest.raises(InfeasibleEvaluation, match=unknown):
        plan_evaluation(config(TaskConfig("x", "cross_domain", target_domain="X")), dataset)


def test_an_empty_target_domain_stops_with_the_count_of_eligible_users():
    dataset = random_cross_domain(num_users=3)
    with pytest.raises(InfeasibleEvaluation, match="only 3 users have >= 5 source"):
        plan_evaluation(config(TaskConfig("t", "cross_domain", target_domain="T")), dataset)


def test_every_task_that_cannot_be_evaluated_is_named_in_one_message():
    dataset = random_cross_domain(num_users=80)
    tasks = (TaskConfig("a", "profile", attribute="age"),
             TaskConfig("x", "cross_domain", target_domain="X"),
             TaskConfig("t", "cross_domain", target_domain="T"))
    with pytest.raises(InfeasibleEvaluation) as caught:
        plan_evaluation(config(*tasks), dataset)
    lines = str(caught.value).splitlines()
    assert lines[0] == "cannot evaluate these tasks:"
    assert [line[:10] for line in lines[1:]] == ["- task 'a'", "- task 'x'"]


def test_pretraining_view_plans_first_so_it_refuses_a_config_that_cannot_be_evaluated():
    dataset = users_with({"gender": ["M"] * 40})
    with pytest.raises(InfeasibleEvaluation):
        pretraining_view(config(TaskConfig("sex", "profile", attribute="gender")), dataset)


def test_the_plan_survives_its_json_payload():
    dataset = users_with({"age": ages(300), "gender": list("MF" * 150)})
    cfg = config(TaskConfig("age", "profile", attribute="age", buckets=AGE_BUCKETS),
                 TaskConfig("gender", "profile", attribute="gender"))
    plan = plan_evaluation(cfg, dataset)
    back = EvaluationPlan.from_payload(json.loads(json.dumps(plan.to_payload())))
    assert back.to_payload() == plan.to_payload()
    split = back.profile["gender"]
    assert split.labels.labels.dtype.kind == "U" and split.buckets is None
    assert back.profile["age"].buckets == AGE_BUCKETS
    assert set(back.profile["age"].skipped) == {"0.01"}
