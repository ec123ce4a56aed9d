"""Simple baselines for P2 and P3, and the one evaluation path every method reports through.

A neural method is only interesting if it beats these on the same folds and users, so the
baselines follow PROTOCOLS.md to the letter and fit nothing on test users. The evaluation functions
(:func:`evaluate_profile`, :func:`evaluate_cross_domain`) are shared with the neural methods.

Example (MovieLens-100K age, prepared by ``training.data.prepare.load_dataset``)::

    from uservec.training.baselines import run_profile_baselines
    from uservec.training.protocols import AGE_BUCKETS
    result = run_profile_baselines(dataset, "age", AGE_BUCKETS, low_label=False)
"""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from uservec.contract.decision import Decision
from uservec.training.data.dataset import PreparedDataset
from uservec.training.metrics import (
    accuracy,
    hit_rate_at_k,
    macro_f1,
    mean_se,
    mean_std,
    ndcg_at_k,
    recall_at_k,
    top_k,
)
from uservec.training.protocols import (
    CrossDomainSplit,
    Fold,
    ProfileLabels,
    binary_matrix,
    cross_domain_split,
    event_users,
    inner_folds,
    profile_folds,
    profile_labels,
)

logger = logging.getLogger(__name__)

#: P2 logistic-regression inverse regularisation strengths (ties: the smaller C)
C_GRID: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0)
#: P3 ridge penalties: half-decades from 1 to 10^4 (ties: the smaller lambda)
LAMBDA_GRID: tuple[float, ...] = tuple(float(10 ** (e / 2)) for e in range(9))
#: P2 TF-IDF vocabulary: items seen by at least this many training-fold users
MIN_ITEM_USERS = 2
K = 10


# --------------------------------------------------------------------------------------------
# P2: evaluation path
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ProfileFold:
    """What a P2 method gets for one fold (dataset user indices and their labels)."""

    index: int
    #: labelled users the method may fit on
    train_users: np.ndarray
    train_labels: np.ndarray
    #: users to predict (labels withheld)
    test_users: np.ndarray
    #: every training-fold user (== train_users unless low-label): behaviour, no labels needed
    pool_users: np.ndarray
    classes: np.ndarray


#: predict_fn(fold) -> (len(fold.test_users),) predicted labels (str), or one such array per
#: decision rule (see :data:`METRIC_DECISION`)
PredictFn = Callable[[ProfileFold], np.ndarray | Mapping[str, np.ndarray]]

#: which decision rule each metric reads when a method offers several. A network trained with
#: class weights ``w_c ~ 1 / prior_c`` estimates the *balanced* posterior: its argmax as trained
#: targets balanced error (macro-F1), while its logits shifted by ``log prior`` give the argmax of
#: the ordinary posterior, the Bayes rule for accuracy (post-hoc logit adjustment, Menon et al.
#: 2021). The baselines get the same split by training two models (``lr`` for accuracy,
#: ``lr_bal`` for macro-F1); the rule per metric is fixed here, never chosen on a test fold.
METRIC_DECISION: dict[str, Decision] = {"accuracy": "prior_adjusted", "macro_f1": "as_trained"}
PROFILE_METRICS: tuple[str, ...] = tuple(METRIC_DECISION)


def _scores(truth: np.ndarray, predicted: np.ndarray, classes: np.ndarray) -> dict[str, float]:
    return {"accuracy": accuracy(truth, predicted),
            "macro_f1": macro_f1(truth, predicted, classes)}


def _mean_std(rows: Sequence[Mapping[str, float]], metric: str) -> dict[str, float]:
    return dict(zip(("mean", "std"), mean_std([r[metric] for r in rows]), strict=True))


def evaluate_profile(
    predict_fn: PredictFn, labels: ProfileLabels, folds: Sequence[Fold]
) -> dict[str, Any]:
    """Per-fold accuracy and macro-F1 of ``predict_fn`` plus mean ± sample std over the folds.

    When ``predict_fn`` returns one prediction per decision rule, each metric reads its rule of
    :data:`METRIC_DECISION` and ``decisions`` records every metric under every rule, so a report
    can show what the choice of rule moved.
    """
    per_fold = []
    decisions: dict[str, list[dict[str, float]]] = {}
    for index, fold in enumerate(folds):
        data = ProfileFold(
            index=index,
            train_users=labels.users[fold.train],
            train_labels=labels.labels[fold.train],
            test_users=labels.users[fold.test],
            pool_users=labels.users[fold.pool],
            classes=labels.classes,
        )
        truth = labels.labels[fold.test]
        predicted = predict_fn(data)
        if isinstance(predicted, Mapping):
            by_rule = {rule: _scores(truth, np.asarray(p).astype(str), labels.classes)
                       for rule, p in predicted.items()}
            for rule, scores in by_rule.items():
                decisions.setdefault(rule, []).append(scores)
            scores = {metric: by_rule[METRIC_DECISION[metric]][metric]
                      for metric in PROFILE_METRICS}
        else:
            scores = _scores(truth, np.asarray(predicted).astype(str), labels.classes)
        per_fold.append({
            "fold": index,
            "train_rows": int(fold.train.size),
            "test_rows": int(fold.test.size),
            **scores,
        })
    result: dict[str, Any] = {
        "per_fold": per_fold,
        **{metric: _mean_std(per_fold, metric) for metric in PROFILE_METRICS},
    }
    if decisions:
        result["decisions"] = {
            rule: {metric: {**_mean_std(rows, metric), "per_fold": [r[metric] for r in rows]}
                   for metric in PROFILE_METRICS}
            for rule, rows in decisions.items()
        }
    return result


# --------------------------------------------------------------------------------------------
# P2: baselines
# --------------------------------------------------------------------------------------------


def user_item_matrix(dataset: PreparedDataset) -> sp.csr_matrix:
    """(U, I) binary user x catalog-item matrix (raw item identity, rare items included)."""
    return binary_matrix(event_users(dataset), dataset.item_index,
                         (dataset.num_users, dataset.catalog.size))


def tfidf_features(
    matrix: sp.csr_matrix, pool_users: np.ndarray, *user_sets: np.ndarray
) -> list[sp.csr_matrix]:
    """TF-IDF rows for each of ``user_sets``, vocabulary and IDF from the training-fold pool."""
    pool = matrix[pool_users]
    vocabulary = np.flatnonzero(np.asarray(pool.sum(axis=0)).ravel() >= MIN_ITEM_USERS)
    transformer = TfidfTransformer(norm="l2", smooth_idf=True).fit(pool[:, vocabulary])
    return [sp.csr_matrix(transformer.transform(matrix[users][:, vocabulary]))
            for users in user_sets]


def majority_predict(fold: ProfileFold) -> np.ndarray:
    """Most frequent training label (ties: first in class order) for every test user."""
    counts = np.array([(fold.train_labels == c).sum() for c in fold.classes])
    return np.full(fold.test_users.size, fold.classes[int(np.argmax(counts))])


#: sklearn's ``class_weight``: None (unweighted), "balanced", or {class: weight}
ClassWeight = str | Mapping[Any, float] | None


def balanced_weight(balanced: bool) -> ClassWeight:
    """The ``class_weight`` of the ``lr_bal`` (True) or ``lr`` (False) baseline."""
    return "balanced" if balanced else None


def fit_lr(features: Any, labels: np.ndarray, c: float,
           class_weight: ClassWeight) -> LogisticRegression:
    """A logistic regression with inverse L2 strength ``c`` (lbfgs, one BLAS thread)."""
    model = LogisticRegression(C=c, solver="lbfgs", max_iter=1000, class_weight=class_weight)
    # One thread: these problems are small, and BLAS/OpenMP threads on a shared machine make
    # lbfgs an order of magnitude slower through oversubscription.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(features, labels)


def fit_predict(
    train: Any, labels: np.ndarray, test: Any, c: float, class_weight: ClassWeight
) -> np.ndarray:
    """Logistic-regression predictions; a one-class training set predicts that class."""
    if np.unique(labels).size < 2:
        return np.full(test.shape[0], labels[0])
    return fit_lr(train, labels, c, class_weight).predict(test)


#: C used when the labelled rows are too few for inner cross-validation
FALLBACK_C = 1.0


def select_c(
    features: Any, labels: np.ndarray, classes: np.ndarray, balanced: bool, *,
    predict: Callable[[Any, np.ndarray, Any, float], Any] | None = None,
    score: Callable[[np.ndarray, Any], float] | None = None,
) -> tuple[float, list[float]]:
    """C by inner 3-fold CV: accuracy (``lr``) or macro-F1 (``lr_bal``); ties -> smaller C.

    ``predict(train, train_labels, test, c)`` and ``score(truth, predictions)``, when given,
    replace the fit and the criterion that ``balanced`` implies (a task head's linear probe,
    ``profile_task.probe_head``, predicts under two decision rules and scores each metric on
    its own).
    """
    _, counts = np.unique(labels, return_counts=True)
    n_splits = min(3, int(counts.max()))
    if counts.size < 2 or n_splits < 2:
        logger.warning("%d labelled rows: too few for inner CV, using C=%s", labels.size,
                       FALLBACK_C)
        return FALLBACK_C, []
    with warnings.catch_warnings():
        # Low-label folds can hold classes with fewer than 3 examples; CV still runs.
        warnings.simplefilter("ignore", UserWarning)
        folds = inner_folds(labels, n_splits=n_splits)
    if predict is None:
        class_weight = balanced_weight(balanced)

        def predict(train: Any, train_labels: np.ndarray, test: Any, c: float) -> np.ndarray:
            return fit_predict(train, train_labels, test, c, class_weight)

    if score is None:
        score = (lambda truth, predicted: macro_f1(truth, predicted, classes)) if balanced \
            else accuracy
    scores = []
    for c in C_GRID:
        per_fold = [
            score(labels[fold.test], predict(features[fold.train], labels[fold.train],
                                             features[fold.test], c))
            for fold in folds
        ]
        scores.append(float(np.mean(per_fold)))
    return C_GRID[int(np.argmax(scores))], scores


class LogisticPredictor:
    """The ``lr`` (``balanced=False``) or ``lr_bal`` baseline as a P2 ``predict_fn``.

    Keeps the C chosen in each fold (``chosen_c``) for the report.
    """

    def __init__(self, matrix: sp.csr_matrix, balanced: bool) -> None:
        self.matrix = matrix  # user x item counts (user_item_matrix), shared by both variants
        self.balanced = balanced
        self.chosen_c: list[float] = []

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        train, test = tfidf_features(self.matrix, fold.pool_users, fold.train_users,
                                     fold.test_users)
        c, scores = select_c(train, fold.train_labels, fold.classes, self.balanced)
        self.chosen_c.append(c)
        logger.debug("fold %d: C=%s (inner scores %s)", fold.index, c, scores)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))


def run_profile_baselines(
    dataset: PreparedDataset,
    attribute: str,
    buckets: Sequence[float] | None = None,
    low_label: bool = False,
) -> dict[str, Any]:
    """P2 baselines (majority, lr, lr_bal) on one attribute; JSON-ready."""
    labels = profile_labels(dataset, attribute, buckets)
    folds = profile_folds(labels.users, labels.labels, low_label=low_label)
    results: dict[str, Any] = {}
    matrix = user_item_matrix(dataset)
    methods: dict[str, PredictFn] = {
        "majority": majority_predict,
        "lr": LogisticPredictor(matrix, balanced=False),
        "lr_bal": LogisticPredictor(matrix, balanced=True),
    }
    for name, predict in methods.items():
        start = time.perf_counter()
        result = evaluate_profile(predict, labels, folds)
        result["seconds"] = round(time.perf_counter() - start, 2)
        if isinstance(predict, LogisticPredictor):
            result["chosen_c"] = list(predict.chosen_c)
        results[name] = result
        logger.info("P2 %s %s %s: acc %.3f ± %.3f, macro-F1 %.3f ± %.3f", dataset.name,
                    attribute, name, result["accuracy"]["mean"], result["accuracy"]["std"],
                    result["macro_f1"]["mean"], result["macro_f1"]["std"])
    return {
        "protocol": "P2",
        "dataset": dataset.name,
        "attribute": attribute,
        "buckets": None if buckets is None else list(buckets),
        "low_label": low_label,
        "classes": labels.classes.tolist(),
        "labelled_users": int(labels.users.size),
        "baselines": results,
    }


# --------------------------------------------------------------------------------------------
# P3: evaluation path
# --------------------------------------------------------------------------------------------

#: score_fn(users) -> (len(users), C) scores over ``split.candidates`` (higher = better)
ScoreFn = Callable[[np.ndarray], np.ndarray]


def evaluate_cross_domain(
    score_fn: ScoreFn, split: CrossDomainSplit, k: int = K, batch_size: int = 512
) -> dict[str, Any]:
    """HR/Recall/NDCG@k per evaluable test user (P3 ranking and tie rule) and mean ± s.e."""
    users = split.test_users
    hr, recall, ndcg = (np.zeros(users.size) for _ in range(3))
    for start in range(0, users.size, batch_size):
        batch = users[start : start + batch_size]
        scores = np.asarray(score_fn(batch), dtype=np.float64)
        if scores.shape != (batch.size, split.num_candidates):
            raise ValueError(
                f"score_fn returned {scores.shape}, expected {(batch.size, split.num_candidates)}"
            )
        ranked = top_k(scores, split.popularity, k)
        for row, user in enumerate(batch):
            truth = split.ground_truth(int(user))
            pos = start + row
            hr[pos] = hit_rate_at_k(ranked[row], truth, k)
            recall[pos] = recall_at_k(ranked[row], truth, k)
            ndcg[pos] = ndcg_at_k(ranked[row], truth, k)
    aggregate = {}
    for name, values in ((f"hr@{k}", hr), (f"recall@{k}", recall), (f"ndcg@{k}", ndcg)):
        mean, se = mean_se(values) if values.size else (float("nan"), float("nan"))
        aggregate[name] = {"mean": mean, "se": se}
    return {
        **aggregate,
        "evaluated_users": int(users.size),
        "left_out_users": int(split.left_out_users.size),
        "per_user": {
            "user_id": split.dataset.user_ids[users].tolist(),
            f"hr@{k}": hr.tolist(),
            f"recall@{k}": recall.tolist(),
            f"ndcg@{k}": ndcg.tolist(),
        },
    }


# --------------------------------------------------------------------------------------------
# P3: baselines
# --------------------------------------------------------------------------------------------


def popularity_scorer(split: CrossDomainSplit) -> ScoreFn:
    """Training users per candidate, the same for every user."""
    scores = split.popularity.astype(np.float64)
    return lambda users: np.broadcast_to(scores, (len(users), scores.size))


def _source_features(split: CrossDomainSplit) -> tuple[sp.csr_matrix, np.ndarray]:
    """Binary source bags of the training users, restricted to items they have."""
    bags = split.source_matrix(split.train_users)
    columns = np.flatnonzero(np.asarray(bags.sum(axis=0)).ravel() > 0)
    return sp.csr_matrix(bags[:, columns]), columns


def cooc_scorer(split: CrossDomainSplit) -> ScoreFn:
    """score(t) = sum over the user's distinct source items s of n(s, t) / n(s)."""
    bags, columns = _source_features(split)
    n_s = np.asarray(bags.sum(axis=0)).ravel()  # (S,) training users with s
    n_st = (bags.T @ split.target_matrix(split.train_users)).tocsr()  # (S, C)
    conditional = sp.diags(1.0 / n_s) @ n_st

    def score(users: np.ndarray) -> np.ndarray:
        query = split.source_matrix(users)[:, columns]
        return np.asarray((query @ conditional).todense())

    return score


@dataclass(frozen=True, eq=False)
class RidgeSolver:
    """Ridge from binary source bags (+ penalised intercept column) to binary target bags.

    With design X (n, d) = [bags, 1] and targets Y (n, C), a query x scores
    x W with W = (X^T X + lam I)^-1 X^T Y = X^T (X X^T + lam I)^-1 Y. Both are solved through the
    eigendecomposition G = V diag(e) V^T of the smaller Gram matrix (dual n x n when there are
    fewer users than features, else primal d x d), so a new lambda costs matrix products only:
    scores = basis(x) diag(1 / (e + lam)) V^T Z, with Z = Y (dual) or X^T Y (primal), both sparse.
    """

    #: catalog columns of the source bags used as features
    columns: np.ndarray
    #: (m,) eigenvalues and (m, m) eigenvectors of the Gram matrix
    eigenvalues: np.ndarray
    vectors: np.ndarray
    #: (m, C) sparse right-hand side Z
    rhs: sp.csr_matrix
    #: (d, n) sparse X^T for the dual form (queries enter as x X^T); None for the primal form
    design_t: sp.csr_matrix | None

    def basis(self, query: sp.csr_matrix) -> np.ndarray:
        """(B, m) queries' source bags mapped into the eigenbasis (independent of lambda)."""
        features = _with_intercept(sp.csr_matrix(query[:, self.columns]))
        if self.design_t is not None:
            features = features @ self.design_t  # (B, n), mostly dense: finish in BLAS
        return features.toarray() @ self.vectors

    def scores_from_basis(self, basis: np.ndarray, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for queries already in the eigenbasis."""
        weighted = (basis / (self.eigenvalues + lam)) @ self.vectors.T  # (B, m)
        return np.asarray((self.rhs.T @ weighted.T).T)

    def scores(self, query: sp.csr_matrix, lam: float) -> np.ndarray:
        """(B, C) predicted target bags for the queries' (B, I) source bags."""
        return self.scores_from_basis(self.basis(query), lam)


def _with_intercept(features: sp.csr_matrix) -> sp.csr_matrix:
    ones = sp.csr_matrix(np.ones((features.shape[0], 1)))
    return sp.hstack([features, ones], format="csr")


def fit_ridge(
    bags: sp.csr_matrix, targets: sp.csr_matrix, columns: np.ndarray | None = None
) -> RidgeSolver:
    """Prepare the ridge solve for any lambda; ``bags`` (n, I) binary, ``targets`` (n, C)."""
    if columns is None:
        columns = np.flatnonzero(np.asarray(bags.sum(axis=0)).ravel() > 0)
    design = _with_intercept(sp.csr_matrix(bags[:, columns]))  # (n, d)
    targets = sp.csr_matrix(targets, dtype=np.float64)
    n, d = design.shape
    dual = n <= d
    gram = (design @ design.T) if dual else (design.T @ design)
    with threadpool_limits(limits=1):  # see _fit_lr: threads only fight on shared cores
        eigenvalues, vectors = np.linalg.eigh(np.asarray(gram.todense()))
    rhs = targets if dual else sp.csr_matrix(design.T @ targets)
    return RidgeSolver(
        columns=columns,
        eigenvalues=eigenvalues,
        vectors=vectors,
        rhs=rhs,
        design_t=sp.csr_matrix(design.T) if dual else None,
    )


def ridge_scorer(split: CrossDomainSplit, lam: float, solver: RidgeSolver | None = None) -> ScoreFn:
    """Ridge baseline for one lambda, fitted on ``split.train_users``."""
    if solver is None:
        bags = split.source_matrix(split.train_users)
        solver = fit_ridge(bags, split.target_matrix(split.train_users))
    return lambda users: solver.scores(split.source_matrix(users), lam)


def best_lambda(scores: Mapping[float, float]) -> float:
    """P3's rule for a penalty grid: the highest validation NDCG, ties -> the smaller lambda.

    One rule for every ridge the project tunes (the baseline, the probes, the P3 probe head), so
    "ridge on the vector" and "ridge on the bag" are compared under the same selection.
    """
    return float(max(scores, key=lambda lam: (scores[lam], -lam)))


def validation_ndcg(
    score_at: Callable[[float], ScoreFn], valid: CrossDomainSplit, k: int = K
) -> dict[float, float]:
    """Mean NDCG@k on ``valid``'s test users (the P3 validation users) at each lambda of the grid.

    ``score_at(lam)`` is the model at one penalty; the baseline and every probe tune through this
    one loop and :func:`best_lambda`, so their lambdas are chosen the same way.
    """
    return {lam: evaluate_cross_domain(score_at(lam), valid, k)[f"ndcg@{k}"]["mean"]
            for lam in LAMBDA_GRID}


def select_lambda(split: CrossDomainSplit, k: int = K) -> tuple[float, dict[str, float]]:
    """Lambda by NDCG@k on the validation users (treated like test users); ties -> smaller."""
    if split.validation is None:
        raise ValueError("the split has no validation round")
    valid = split.validation
    solver = fit_ridge(valid.source_matrix(valid.train_users),
                       valid.target_matrix(valid.train_users))
    # The validation users' eigenbasis rows do not depend on lambda: compute them once.
    basis = solver.basis(valid.source_matrix(valid.test_users))
    row_of = {int(user): row for row, user in enumerate(valid.test_users)}

    def score_at(lam: float) -> ScoreFn:
        return lambda users: solver.scores_from_basis(basis[[row_of[int(u)] for u in users]], lam)

    scores = validation_ndcg(score_at, valid, k)
    return best_lambda(scores), {f"{lam:g}": value for lam, value in scores.items()}


def _summary(result: dict[str, Any], seconds: float) -> dict[str, Any]:
    return {**result, "seconds": round(seconds, 2)}


def run_cross_domain_baselines(
    dataset: PreparedDataset, target: str, k: int = K
) -> dict[str, Any]:
    """P3 baselines (popularity, cooc, ridge) for one target domain; JSON-ready."""
    start = time.perf_counter()
    split = cross_domain_split(dataset, target)
    split_seconds = time.perf_counter() - start
    results: dict[str, Any] = {}

    start = time.perf_counter()
    results["popularity"] = _summary(
        evaluate_cross_domain(popularity_scorer(split), split, k), time.perf_counter() - start
    )
    start = time.perf_counter()
    results["cooc"] = _summary(
        evaluate_cross_domain(cooc_scorer(split), split, k), time.perf_counter() - start
    )
    start = time.perf_counter()
    with threadpool_limits(limits=1):
        lam, validation = select_lambda(split, k)
        ridge = evaluate_cross_domain(ridge_scorer(split, lam), split, k)
    results["ridge"] = _summary(
        {**ridge, "lambda": lam, "validation_ndcg": validation}, time.perf_counter() - start
    )
    for name, result in results.items():
        logger.info("P3 %s -> %s %s: NDCG@%d %.4f ± %.4f", dataset.name, target, name, k,
                    result[f"ndcg@{k}"]["mean"], result[f"ndcg@{k}"]["se"])
    return {
        "protocol": "P3",
        "dataset": dataset.name,
        "target_domain": target,
        "k": k,
        "split": split.summary(),
        "split_seconds": round(split_seconds, 2),
        "baselines": results,
    }
