import json

import numpy as np
from data_helpers import build_dataset, labelled_dataset

from uservec.training.baselines.logistic import C_GRID, LogisticPredictor, select_c
from uservec.training.baselines.profile import run_profile_baselines
from uservec.training.baselines.tfidf import tfidf_features, user_item_matrix
from uservec.training.evaluation.profile_eval import evaluate_profile
from uservec.training.evaluation.profile_split import profile_folds, profile_labels


def test_logistic_regression_learns_the_signal_without_seeing_test_labels():
    dataset = labelled_dataset()
    labels = profile_labels(dataset, "kind")
    folds = profile_folds(labels.users, labels.labels)
    seen = []
    inner = LogisticPredictor(user_item_matrix(dataset), balanced=False)

    def spy(fold):
        assert np.intersect1d(fold.train_users, fold.test_users).size == 0
        seen.append(fold.test_users)
        return inner(fold)

    result = evaluate_profile(spy, labels, folds)
    assert result.summary("accuracy").mean > 0.8  # majority would be about 0.5
    assert len(seen) == 5

    def predictions(profile, fold):
        captured = {}
        predict = LogisticPredictor(user_item_matrix(dataset), balanced=False)

        def capture(data):
            captured["labels"] = predict(data)
            return captured["labels"]

        evaluate_profile(capture, profile, [fold])
        return captured["labels"]

    # Shuffling the test fold's labels must not change any prediction (no label leak).
    fold = folds[0]
    shuffled = labels.labels.copy()
    shuffled[fold.test] = np.random.default_rng(3).permutation(shuffled[fold.test])
    assert not np.array_equal(shuffled, labels.labels)
    changed = labels._replace(labels=shuffled)
    assert np.array_equal(predictions(labels, fold), predictions(changed, fold))


def test_tfidf_vocabulary_is_items_of_at_least_two_pool_users():
    dataset = build_dataset([1, 1, 2, 2, 3, 4], ["a", "b", "a", "c", "b", "d"])
    matrix = user_item_matrix(dataset)
    pool = np.array([0, 1, 2])  # users 1, 2, 3: a twice, b twice, c once
    train, test = tfidf_features(matrix, pool, pool, np.array([3]))
    assert train.shape == (3, 2) and test.shape == (1, 2)
    assert test.nnz == 0  # the test user's only item (d) is not in the vocabulary
    assert np.allclose(np.sqrt(train.multiply(train).sum(axis=1)), 1.0)  # l2 rows


def run_baselines(num_users: int, low_label: bool):
    dataset = labelled_dataset(num_users)
    labels = profile_labels(dataset, "kind")
    return run_profile_baselines(dataset, labels, profile_folds(*labels[:2], low_label=low_label))


def test_run_profile_baselines_is_json_ready():
    result = run_baselines(150, low_label=True)
    assert set(result) == {"majority", "lr", "lr_bal"}
    as_json = {name: json.loads(json.dumps(r.to_json())) for name, r in result.items()}
    assert all(len(r["per_fold"]) == 5 for r in as_json.values())
    assert all(c in (0.01, 0.1, 1.0, 10.0) for c in as_json["lr"]["chosen_c"])
    assert "chosen_c" not in as_json["majority"]


def test_too_few_labels_for_inner_cv_still_predict():
    # 60 users, low-label: 4 labelled rows per fold, fewer than 3 per class.
    result = run_baselines(60, low_label=True)
    assert all(len(r.evaluation.per_fold) == 5 for r in result.values())


def test_select_c_scores_what_a_custom_predict_returns():
    """A probe's inner CV: ``predict`` fits, ``score`` reads its output (here: per rule)."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(30, 2)), np.array([0, 1] * 15)
    calls = []

    def predict(_train, _train_labels, test, c):
        calls.append(c)
        return {"rule": np.full(test.shape[0], 1 if c == C_GRID[2] else 0)}

    c, scores = select_c(features, labels, np.arange(2), balanced=False, predict=predict,
                         score=lambda _truth, by_rule: float(np.mean(by_rule["rule"] == 1)))
    assert c == C_GRID[2]
    assert sorted(set(calls)) == sorted(C_GRID) and len(calls) == 3 * len(C_GRID)
    assert scores[2] == 1.0 and max(scores[:2] + scores[3:]) == 0.0
