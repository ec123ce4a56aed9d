import dataclasses
import json

import numpy as np
import pytest
import scipy.sparse as sp
from data_helpers import build_dataset, random_cross_domain

from uservec.training.baselines import ridge as ridge_module
from uservec.training.baselines.cooccurrence import cooc_scorer, popularity_scorer
from uservec.training.baselines.cross_domain import run_cross_domain_baselines
from uservec.training.baselines.ridge import (
    LAMBDA_GRID,
    LowRankRidge,
    best_lambda,
    fit_ridge,
    ridge_scorer,
    select_lambda,
)
from uservec.training.evaluation.cross_domain_split import cross_domain_split


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
    split = cross_domain_split(random_cross_domain(num_users=150), "T")
    result = run_cross_domain_baselines(split)
    baselines = {name: json.loads(json.dumps(r.to_json())) for name, r in result.items()}
    assert set(baselines) == {"popularity", "cooc", "ridge"}
    assert baselines["ridge"]["ndcg@10"]["mean"] > baselines["popularity"]["ndcg@10"]["mean"]
    assert split.test_users.size == baselines["ridge"]["evaluated_users"]
    assert list(baselines["ridge"])[-3:] == ["lambda", "validation_ndcg", "seconds"]
    assert "per_user" not in baselines["cooc"]


@pytest.mark.parametrize("num_users", [5, 40])
def test_low_rank_ridge_at_full_rank_equals_a_brute_force_solve(monkeypatch, num_users):
    """Above EXACT_MAX the solver is the SVD form; at the design's full rank it is exact."""
    monkeypatch.setattr(ridge_module, "EXACT_MAX", 2)
    monkeypatch.setattr(ridge_module, "LOW_RANK", 13)
    rng = np.random.default_rng(num_users)
    bags = (rng.random((num_users, 12)) < 0.3).astype(float)
    bags[:, 0] = 1.0
    targets = (rng.random((num_users, 4)) < 0.4).astype(float)
    query = (rng.random((3, 12)) < 0.3).astype(float)
    solver = fit_ridge(sp.csr_matrix(bags), sp.csr_matrix(targets), columns=np.arange(12))
    assert isinstance(solver, LowRankRidge)
    for lam in (1.0, 31.6):
        got = solver.scores(sp.csr_matrix(query), lam)
        assert np.allclose(got, brute_force_ridge(bags, targets, query, lam), atol=1e-8)


def test_low_rank_ridge_keeps_the_ranking_of_a_low_rank_signal(monkeypatch):
    """Truncated below full rank, the ridge still ranks like the exact one when the signal is
    low-rank (bags drawn from a few tastes), which is the case it is chosen for."""
    rng = np.random.default_rng(0)
    taste = rng.integers(0, 3, 300)
    bags = (rng.random((300, 60)) < np.where(np.arange(60) // 20 == taste[:, None], 0.5, 0.02))
    targets = (rng.random((300, 9)) < np.where(np.arange(9) // 3 == taste[:, None], 0.6, 0.05))
    query = sp.csr_matrix(bags[:20].astype(float))
    exact = fit_ridge(sp.csr_matrix(bags, dtype=float), sp.csr_matrix(targets, dtype=float))
    monkeypatch.setattr(ridge_module, "EXACT_MAX", 2)
    monkeypatch.setattr(ridge_module, "LOW_RANK", 8)
    low = fit_ridge(sp.csr_matrix(bags, dtype=float), sp.csr_matrix(targets, dtype=float))
    assert isinstance(low, LowRankRidge) and isinstance(exact, ridge_module.RidgeSolver)
    top_exact = np.argmax(exact.scores(query, 10.0), axis=1) // 3
    top_low = np.argmax(low.scores(query, 10.0), axis=1) // 3
    assert (top_exact == top_low).mean() >= 0.9


def test_low_rank_ridge_applies_its_weights_without_forming_them(monkeypatch):
    """W @ x and W.T @ y (what the wide heads truncate) equal the dense ridge solution's."""
    monkeypatch.setattr(ridge_module, "EXACT_MAX", 2)
    monkeypatch.setattr(ridge_module, "LOW_RANK", 21)  # full rank: 20 features + intercept
    rng = np.random.default_rng(0)
    bags = (rng.random((60, 20)) < 0.3).astype(float)
    targets = (rng.random((60, 7)) < 0.3).astype(float)
    solver = fit_ridge(sp.csr_matrix(bags), sp.csr_matrix(targets), columns=np.arange(20))
    assert isinstance(solver, LowRankRidge)
    design = np.hstack([bags, np.ones((60, 1))])
    weights = np.linalg.solve(design.T @ design + 3.0 * np.eye(21), design.T @ targets)
    x, y = rng.random((7, 3)), rng.random((21, 3))
    assert np.allclose(solver.weights_matvec(x, 3.0), weights @ x, atol=1e-10)
    assert np.allclose(solver.weights_rmatvec(y, 3.0), weights.T @ y, atol=1e-10)
