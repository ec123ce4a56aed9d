import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from data_helpers import build_dataset, random_cross_domain

from uservec.training.baselines import (
    C_GRID,
    LAMBDA_GRID,
    LogisticPredictor,
    best_lambda,
    cooc_scorer,
    evaluate_cross_domain,
    evaluate_profile,
    fit_ridge,
    majority_predict,
    popularity_scorer,
    ridge_scorer,
    run_cross_domain_baselines,
    run_profile_baselines,
    select_c,
    select_lambda,
    tfidf_features,
    user_item_matrix,
)
from uservec.training.metrics import macro_f1
from uservec.training.protocols import cross_domain_split, profile_folds, profile_labels


def labelled_dataset(num_users: int = 60, seed: int = 0):
    """Users whose label decides which half of the items they mostly watch."""
    rng = np.random.default_rng(seed)
    labels = rng.choice(["x", "y", "z"], num_users, p=[0.5, 0.3, 0.2])
    offset = {"x": 0, "y": 10, "z": 20}
    events = []
    for user, label in enumerate(labels, start=1):
        for _ in range(8):
            on_topic = rng.random() < 0.8
            item = offset[label] + rng.integers(0, 10) if on_topic else rng.integers(0, 30)
            events.append((user, int(item)))
    users, items = zip(*events, strict=True)
    frame = pd.DataFrame({"kind": labels}, index=np.arange(1, num_users + 1))
    return build_dataset(users, items, users=frame)


# ---------------------------------------------------------------------------------------- P2


def test_evaluate_profile_scores_each_fold_and_aggregates():
    dataset = labelled_dataset()
    labels = profile_labels(dataset, "kind")
    folds = profile_folds(labels.users, labels.labels)
    truth = dict(zip(labels.users.tolist(), labels.labels.tolist(), strict=True))

    def oracle(fold):
        return np.array([truth[int(u)] for u in fold.test_users])

    result = evaluate_profile(oracle, labels, folds)
    assert [f["accuracy"] for f in result["per_fold"]] == [1.0] * 5
    assert result["macro_f1"] == {"mean": 1.0, "std": 0.0}

    majority = evaluate_profile(majority_predict, labels, folds)
    expected = [np.mean(labels.labels[f.test] == "x") for f in folds]
    assert [f["accuracy"] for f in majority["per_fold"]] == pytest.approx(expected)
    assert majority["accuracy"]["std"] == pytest.approx(np.std(expected, ddof=1))


def test_evaluate_profile_reads_each_metric_from_its_decision_rule():
    """accuracy from the prior-adjusted predictions, macro-F1 from the argmax as trained."""
    dataset = labelled_dataset()
    labels = profile_labels(dataset, "kind")
    folds = profile_folds(labels.users, labels.labels)
    truth = dict(zip(labels.users.tolist(), labels.labels.tolist(), strict=True))

    def two_rules(fold):
        right = np.array([truth[int(u)] for u in fold.test_users])
        return {"as_trained": np.full(right.size, "z"), "prior_adjusted": right}

    result = evaluate_profile(two_rules, labels, folds)
    assert result["accuracy"]["mean"] == 1.0  # read from prior_adjusted
    expected_f1 = [macro_f1(labels.labels[f.test], np.full(f.test.size, "z"), labels.classes)
                   for f in folds]
    assert [f["macro_f1"] for f in result["per_fold"]] == pytest.approx(expected_f1)
    as_trained = result["decisions"]["as_trained"]
    assert as_trained["accuracy"]["per_fold"] == pytest.approx(
        [np.mean(labels.labels[f.test] == "z") for f in folds])
    assert result["decisions"]["prior_adjusted"]["macro_f1"]["mean"] == 1.0
    assert "decisions" not in evaluate_profile(majority_predict, labels, folds)


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
    assert result["accuracy"]["mean"] > 0.8  # majority would be about 0.5
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


def test_run_profile_baselines_is_json_ready():
    result = run_profile_baselines(labelled_dataset(150), "kind", low_label=True)
    json.dumps(result)
    assert set(result["baselines"]) == {"majority", "lr", "lr_bal"}
    assert all(len(r["per_fold"]) == 5 for r in result["baselines"].values())
    assert all(c in (0.01, 0.1, 1.0, 10.0) for c in result["baselines"]["lr"]["chosen_c"])


def test_too_few_labels_for_inner_cv_still_predict():
    # 60 users, low-label: 4 labelled rows per fold, fewer than 3 per class.
    result = run_profile_baselines(labelled_dataset(60), "kind", low_label=True)
    assert all(len(r["per_fold"]) == 5 for r in result["baselines"].values())


def test_select_c_scores_what_a_custom_predict_returns():
    """A probe's inner CV: ``predict`` fits, ``score`` reads its output (here: per rule)."""
    rng = np.random.default_rng(0)
    features, labels = rng.normal(size=(30, 2)), np.array([0, 1] * 15)
    calls = []

    def predict(train, train_labels, test, c):
        calls.append(c)
        return {"rule": np.full(test.shape[0], 1 if c == C_GRID[2] else 0)}

    c, scores = select_c(features, labels, np.arange(2), balanced=False, predict=predict,
                         score=lambda truth, by_rule: float(np.mean(by_rule["rule"] == 1)))
    assert c == C_GRID[2]
    assert sorted(set(calls)) == sorted(C_GRID) and len(calls) == 3 * len(C_GRID)
    assert scores[2] == 1.0 and max(scores[:2] + scores[3:]) == 0.0


# ---------------------------------------------------------------------------------------- P3


def brute_force_ridge(bags: np.ndarray, targets: np.ndarray, query: np.ndarray, lam: float):
    design = np.hstack([bags, np.ones((bags.shape[0], 1))])
    weights = np.linalg.solve(design.T @ design + lam * np.eye(design.shape[1]),
                              design.T @ targets)
    return np.hstack([query, np.ones((query.shape[0], 1))]) @ weights


@pytest.mark.parametrize("num_users", [5, 40])  # dual (users < features) and primal forms
def test_ridge_equals_a_brute_force_solve(num_users):
    rng = np.random.default_rng(num_users)
    bags = (rng.random((num_users, 12)) < 0.3).astype(float)
    bags[:, 0] = 1.0  # every feature column used, so none is dropped
    targets = (rng.random((num_users, 4)) < 0.4).astype(float)
    query = (rng.random((3, 12)) < 0.3).astype(float)
    solver = fit_ridge(sp.csr_matrix(bags), sp.csr_matrix(targets), columns=np.arange(12))
    assert (solver.design_t is not None) == (num_users < 13)  # 12 features + intercept
    for lam in (1.0, 31.6):
        got = solver.scores(sp.csr_matrix(query), lam)
        assert np.allclose(got, brute_force_ridge(bags, targets, query, lam), atol=1e-9)


def test_cooc_and_popularity_match_hand_computation():
    rows = []
    sources = {1: "abcde", 2: "abcdf", 3: "aghij", 4: "aghik", 5: "bghil", 6: "cdefg"}
    targets = {1: ["t1"], 2: ["t1", "t2"], 3: ["t2"], 4: ["t3"], 5: ["t2"], 6: ["t1"]}
    for user in sources:
        rows += [(user, s, "S", j) for j, s in enumerate(sources[user])]
        rows += [(user, t, "T", 9) for t in targets[user]]
    users, items, domains, ts = zip(*rows, strict=True)
    dataset = build_dataset(users, items, domains, ts)
    split = cross_domain_split(dataset, "T")
    train = [int(u) for u in dataset.user_ids[split.train_users]]
    keys = [k.split("::")[1] for k in split.candidate_keys]
    # popularity: training users per candidate
    expected_pop = [sum(t in targets[u] for u in train) for t in keys]
    assert split.popularity.tolist() == expected_pop
    test_users = np.concatenate([split.test_users, split.left_out_users])
    scores = cooc_scorer(split)(test_users)
    for row, user in enumerate(test_users):
        for col, t in enumerate(keys):
            expected = 0.0
            for s in set(sources[int(dataset.user_ids[user])]):
                n_s = sum(s in sources[u] for u in train)
                n_st = sum(s in sources[u] and t in targets[u] for u in train)
                expected += n_st / n_s if n_s else 0.0
            assert scores[row, col] == pytest.approx(expected)
    assert np.array_equal(popularity_scorer(split)(test_users)[0], expected_pop)


def test_evaluate_cross_domain_uses_the_tie_rule_and_reports_left_out_users():
    dataset = random_cross_domain(num_users=80)
    split = cross_domain_split(dataset, "T")
    constant = evaluate_cross_domain(lambda users: np.zeros((len(users), split.num_candidates)),
                                     split, k=3)
    popular = evaluate_cross_domain(popularity_scorer(split), split, k=3)
    # Equal scores fall back to popularity order: the same ranking as the popularity baseline.
    assert constant["per_user"]["ndcg@3"] == popular["per_user"]["ndcg@3"]
    assert constant["evaluated_users"] == split.test_users.size
    assert constant["left_out_users"] == split.left_out_users.size
    values = np.array(popular["per_user"]["ndcg@3"])
    assert popular["ndcg@3"]["se"] == pytest.approx(values.std(ddof=1) / math.sqrt(values.size))
    with pytest.raises(ValueError):
        evaluate_cross_domain(lambda users: np.zeros((len(users), 2)), split)


def test_ridge_never_sees_test_users_target_events():
    dataset = random_cross_domain(num_users=80)
    split = cross_domain_split(dataset, "T")
    test_user = int(split.test_users[0])
    before = ridge_scorer(split, 10.0)(split.test_users)
    # Give a test user many more target events: the split and every score must stay the same.
    raw = [(dataset.user_ids[u], dataset.catalog[i].split("::")[1],
            dataset.catalog[i].split("::")[0], t)
           for u in range(dataset.num_users)
           for i, t in zip(dataset.item_index[dataset.offsets[u]:dataset.offsets[u + 1]],
                           dataset.timestamps[dataset.offsets[u]:dataset.offsets[u + 1]],
                           strict=True)]
    target_items = [k.split("::")[1] for k in split.candidate_keys[:5]]
    raw += [(dataset.user_ids[test_user], item, "T", 99) for item in target_items]
    users, items, domains, ts = zip(*raw, strict=True)
    changed = build_dataset(users, items, domains, ts)
    split2 = cross_domain_split(changed, "T")
    assert np.array_equal(split2.train_users, split.train_users)
    after = ridge_scorer(split2, 10.0)(split2.test_users)
    assert np.allclose(before, after)


def test_select_lambda_tunes_on_validation_users_only():
    dataset = random_cross_domain(num_users=120)
    split = cross_domain_split(dataset, "T")
    lam, scores = select_lambda(split, k=10)
    assert lam in LAMBDA_GRID and len(scores) == len(LAMBDA_GRID)
    assert scores[f"{lam:g}"] == max(scores.values())
    assert lam == next(g for g in LAMBDA_GRID if scores[f"{g:g}"] == max(scores.values()))
    # every test user's target events replaced by one other target item: nothing may move
    hidden = split.hidden_events()
    items, item_index = dataset.items.copy(), dataset.item_index.copy()
    other = np.flatnonzero(~hidden & (dataset.event_domain == dataset.domains.index("T")))[0]
    items[hidden], item_index[hidden] = items[other], item_index[other]
    changed = dataclasses.replace(dataset, items=items, item_index=item_index)
    assert (changed.items != dataset.items).any()
    assert select_lambda(cross_domain_split(changed, "T"), k=10) == (lam, scores)


def test_best_lambda_takes_the_highest_score_and_the_smaller_lambda_on_ties():
    assert best_lambda({1.0: 0.2, 10.0: 0.3, 100.0: 0.1}) == 10.0
    assert best_lambda({100.0: 0.3, 1.0: 0.2, 10.0: 0.3}) == 10.0  # order of the keys is irrelevant


def test_run_cross_domain_baselines_is_json_ready_and_ridge_learns_the_signal():
    result = run_cross_domain_baselines(random_cross_domain(num_users=150), "T")
    json.dumps(result)
    baselines = result["baselines"]
    assert set(baselines) == {"popularity", "cooc", "ridge"}
    assert baselines["ridge"]["ndcg@10"]["mean"] > baselines["popularity"]["ndcg@10"]["mean"]
    assert result["split"]["test_users"] == baselines["ridge"]["evaluated_users"]
