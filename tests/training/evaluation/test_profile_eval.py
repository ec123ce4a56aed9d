import numpy as np
import pytest
from data_helpers import labelled_dataset

from uservec.training.baselines.majority import majority_predict
from uservec.training.evaluation.classification import macro_f1
from uservec.training.evaluation.profile_eval import evaluate_profile
from uservec.training.evaluation.profile_split import profile_folds, profile_labels


def test_evaluate_profile_scores_each_fold_and_aggregates():
    dataset = labelled_dataset()
    labels = profile_labels(dataset, "kind")
    folds = profile_folds(labels.users, labels.labels)
    truth = dict(zip(labels.users.tolist(), labels.labels.tolist(), strict=True))

    def oracle(fold):
        return np.array([truth[int(u)] for u in fold.test_users])

    result = evaluate_profile(oracle, labels, folds)
    assert result.values("accuracy") == [1.0] * 5
    assert result.summary("macro_f1").to_json() == {"mean": 1.0, "std": 0.0}

    majority = evaluate_profile(majority_predict, labels, folds)
    expected = [np.mean(labels.labels[f.test] == "x") for f in folds]
    assert majority.values("accuracy") == pytest.approx(expected)
    assert majority.summary("accuracy").std == pytest.approx(np.std(expected, ddof=1))


def test_evaluate_profile_reads_each_metric_from_its_decision_rule():
    """accuracy from the prior-adjusted predictions, macro-F1 from the argmax as trained."""
    dataset = labelled_dataset()
    labels = profile_labels(dataset, "kind")
    folds = profile_folds(labels.users, labels.labels)
    truth = dict(zip(labels.users.tolist(), labels.labels.tolist(), strict=True))

    def two_rules(fold):
        right = np.array([truth[int(u)] for u in fold.test_users])
        return {"as_trained": np.full(right.size, "z"), "prior_adjusted": right}

    result = evaluate_profile(two_rules, labels, folds).to_json()
    assert result["accuracy"]["mean"] == 1.0  # read from prior_adjusted
    expected_f1 = [macro_f1(labels.labels[f.test], np.full(f.test.size, "z"), labels.classes)
                   for f in folds]
    assert [f["macro_f1"] for f in result["per_fold"]] == pytest.approx(expected_f1)
    as_trained = result["decisions"]["as_trained"]
    assert as_trained["accuracy"]["per_fold"] == pytest.approx(
        [np.mean(labels.labels[f.test] == "z") for f in folds])
    assert result["decisions"]["prior_adjusted"]["macro_f1"]["mean"] == 1.0
    assert "decisions" not in evaluate_profile(majority_predict, labels, folds).to_json()
