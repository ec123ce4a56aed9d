"""``uservec probe RUN_DIR``: does the frozen pretrained encoder carry a profile signal at all?

A linear probe fits the P2 logistic-regression baselines (``lr``: accuracy-tuned, ``lr_bal``:
class-balanced, macro-F1-tuned; C by inner CV; same folds, same evaluation code) on *frozen*
user vectors instead of TF-IDF item bags, one readout at a time:

* ``last``: the encoder state after the newest event (the next-item query);
* ``mean``: the encoder states averaged over the window's events (:func:`training.model.read_out`);
* ``item-mean``: the average of the window's input item embeddings (no convolution at all);
* ``tfidf-svd``: not the encoder: a truncated SVD (as many dimensions as the encoder's width) of
  every user's whole TF-IDF item bag, a classic unsupervised user vector of the same size, fit
  on every user's behaviour without labels like pretraining. It shows how much a vector of that
  size *could* carry.
* ``tfidf+mean``: the baselines' own TF-IDF bag with the standardised ``mean`` vector appended
  (scaled to the bag's unit norm). It asks whether the pretrained vector carries anything the
  bag does not: if it only compresses the bag, this row equals the ``lr``/``lr_bal`` baselines,
  and no head on that vector can beat them.

Beside them, ``majority`` (the most frequent training label) is the floor every row is read
against. A task with ``low_label`` gets the same rows again on the low-label folds (10% of each
training fold labelled): with a few dozen labels, accuracy is a contest with the majority class,
and these rows show how far any linear reader of the vector or the bag gets past it.

Cross-domain (P3) tasks get the same question in ranking form: the P3 ``ridge`` baseline's model
fitted on the frozen vector of each user's source history (``ridge-on-mean``,
``ridge-on-item-mean``; :func:`training.cross_domain_task.vector_ridge`, lambda on the P3 validation
users) and on the source bag with the mean readout appended (``ridge-on-bag+mean``, the twin of
``tfidf+mean``) beside ``ridge`` on the source bag itself, with per-user differences.

It costs seconds, so it is the first thing to run before paying for adapters: when every
readout is near the majority class, no head on top of it will do much better, and the fix is in
pretraining. Results go to ``RUN_DIR/probe.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch

from uservec.contract.ids import PAD_ID
from uservec.training.adapt import (
    column_scale,
)
from uservec.training.baselines import (
    K,
    LogisticPredictor,
    PredictFn,
    ProfileFold,
    ScoreFn,
    balanced_weight,
    best_lambda,
    evaluate_cross_domain,
    evaluate_profile,
    fit_predict,
    fit_ridge,
    majority_predict,
    ridge_scorer,
    select_c,
    select_lambda,
    tfidf_features,
    user_item_matrix,
    validation_ndcg,
)
from uservec.training.config import ExperimentConfig
from uservec.training.cross_domain_task import (
    source_inputs,
    source_keep,
    vector_ridge_solver,
)
from uservec.training.data.dataset import PreparedDataset
from uservec.training.model import NextItNet, keep_domains, read_out
from uservec.training.profile_task import (
    profile_inputs,
)
from uservec.training.protocols import (
    CrossDomainSplit,
    cross_domain_split,
    profile_folds,
    profile_labels,
)
from uservec.training.tasks import paired_folds, paired_users, per_fold

logger = logging.getLogger(__name__)

PROBE_READOUTS = ("last", "mean", "item-mean")
#: P3: the readouts a cross-domain head can read (the last position is near chance on P2)
CROSS_DOMAIN_READOUTS = ("mean", "item-mean")


@torch.no_grad()
def frozen_vectors(encoder: NextItNet, items: np.ndarray, readout: str,
                   batch_size: int = 256) -> np.ndarray:
    """(N, L) encoded sequences -> (N, D) vectors of the frozen backbone under ``readout``."""
    encoder.eval()
    parts = []
    for start in range(0, len(items), batch_size):
        batch = torch.from_numpy(items[start : start + batch_size])  # (B, L)
        if readout == "item-mean":
            mask = (batch != PAD_ID).unsqueeze(-1).float()  # (B, L, 1)
            hidden = encoder.embedding(batch) * mask  # (B, L, D)
            parts.append(read_out(hidden, batch, "mean"))
        elif readout in ("last", "mean"):
            parts.append(encoder.user_vector(batch, readout=readout))  # type: ignore[arg-type]
        else:
            raise ValueError(f"readout must be one of {PROBE_READOUTS}, got {readout!r}")
    return torch.cat(parts).numpy() if parts else np.zeros((0, encoder.dim), np.float32)


def tfidf_svd(dataset: PreparedDataset, dim: int, seed: int) -> np.ndarray:
    """(num_users, dim) truncated SVD of every user's TF-IDF item bag (whole history)."""
    from sklearn.decomposition import TruncatedSVD

    everyone = np.arange(dataset.num_users)
    (bags,) = tfidf_features(user_item_matrix(dataset), everyone, everyone)
    dim = max(1, min(dim, bags.shape[1] - 1))
    return np.asarray(TruncatedSVD(dim, random_state=seed).fit_transform(bags), dtype=np.float64)


class LinearProbe:
    """A P2 ``predict_fn``: standardise on the fold's training users, then ``lr``/``lr_bal``."""

    def __init__(self, vectors: np.ndarray, balanced: bool) -> None:
        self.vectors = vectors
        self.balanced = balanced

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        train, test = standardise(self.vectors[fold.train_users], self.vectors[fold.test_users])
        c, _ = select_c(train, fold.train_labels, fold.classes, self.balanced)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale both by the training rows' per-column mean and std (the probe's only fitted step)."""
    mean, std = column_scale(train)
    return (train - mean) / std, (test - mean) / std


class BagPlusVectorProbe:
    """A P2 ``predict_fn``: the ``lr``/``lr_bal`` baseline's TF-IDF bag plus a frozen vector.

    The vector block is standardised on the fold's training users and scaled by 1/sqrt(D), so its
    expected squared norm is 1 like the L2-normalised bag row: neither block dominates the
    shared L2 penalty. Everything else (vocabulary, IDF, C by inner CV) is the baseline's code.
    """

    def __init__(self, matrix: sp.csr_matrix, vectors: np.ndarray, balanced: bool) -> None:
        self.matrix = matrix
        self.vectors = vectors
        self.balanced = balanced

    def __call__(self, fold: ProfileFold) -> np.ndarray:
        bag_train, bag_test = tfidf_features(self.matrix, fold.pool_users, fold.train_users,
                                             fold.test_users)
        vec_train, vec_test = standardise(self.vectors[fold.train_users],
                                          self.vectors[fold.test_users])
        scale = 1.0 / np.sqrt(self.vectors.shape[1])
        train = sp.hstack([bag_train, sp.csr_matrix(vec_train * scale)]).tocsr()
        test = sp.hstack([bag_test, sp.csr_matrix(vec_test * scale)]).tocsr()
        c, _ = select_c(train, fold.train_labels, fold.classes, self.balanced)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))


def _majority(balanced: bool) -> PredictFn:
    """The majority-class predictor, in the probe's ``make(balanced)`` shape (both are one)."""
    return majority_predict


def probe_attribute(
    vectors: dict[str, np.ndarray], dataset: PreparedDataset, attribute: str,
    buckets: Sequence[float] | None = None, bag_plus: str | None = "mean",
    low_label: bool = False,
) -> dict[str, Any]:
    """Mean ± std accuracy (``lr``) and macro-F1 (``lr_bal``) per readout on the P2 folds.

    The first row, ``majority``, is the floor. With ``bag_plus`` (a key of ``vectors``), also
    the row ``tfidf+<bag_plus>`` (:class:`BagPlusVectorProbe`) and, beside it, the plain TF-IDF
    baselines as ``tfidf``, with the per-fold difference between the two, which is what the row
    is for. ``low_label`` probes on the low-label folds (10% of each training fold labelled).
    """
    labels = profile_labels(dataset, attribute, buckets)
    folds = profile_folds(labels.users, labels.labels, low_label=low_label)
    probes: dict[str, Callable[[bool], PredictFn]] = {"majority": _majority}
    probes.update({readout: partial(LinearProbe, matrix) for readout, matrix in vectors.items()})
    if bag_plus is not None:
        matrix = user_item_matrix(dataset)
        probes["tfidf"] = partial(LogisticPredictor, matrix)
        probes[f"tfidf+{bag_plus}"] = partial(BagPlusVectorProbe, matrix, vectors[bag_plus])
    result: dict[str, Any] = {}
    for readout, make in probes.items():
        plain = evaluate_profile(make(False), labels, folds)
        balanced = evaluate_profile(make(True), labels, folds)
        result[readout] = {"lr_accuracy": plain["accuracy"], "lr_bal_macro_f1":
                           balanced["macro_f1"],
                           "per_fold": {"lr_accuracy": per_fold(plain, "accuracy"),
                                        "lr_bal_macro_f1": per_fold(balanced, "macro_f1")}}
        logger.info("probe %s %s: lr accuracy %.3f, lr_bal macro-F1 %.3f", attribute, readout,
                    plain["accuracy"]["mean"], balanced["macro_f1"]["mean"])
    if bag_plus is not None:
        result[f"tfidf+{bag_plus}"]["minus_tfidf"] = {
            metric: paired_folds(result[f"tfidf+{bag_plus}"]["per_fold"][metric],
                                 result["tfidf"]["per_fold"][metric])
            for metric in ("lr_accuracy", "lr_bal_macro_f1")}
    return result


class VectorLookup:
    """Frozen source-history vectors of a fixed set of users, looked up by dataset user index."""

    def __init__(self, users: np.ndarray, vectors: np.ndarray) -> None:
        self.users = np.asarray(users)
        self.vectors = vectors

    def __call__(self, users: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.users, users)
        if np.any(rows >= self.users.size) or np.any(self.users[rows] != users):
            raise KeyError("a user without a computed vector")
        return self.vectors[rows]


def source_vectors(encoder: NextItNet, split: CrossDomainSplit, max_len: int,
                   readout: str) -> VectorLookup:
    """Frozen vectors of the source histories of every user the split fits, tunes or tests on.

    The input is what a P3 head reads: source-domain events only (``source_keep``), latest
    ``max_len``.
    """
    parts = [split.train_users, split.test_users]
    if split.validation is not None:
        parts += [split.validation.train_users, split.validation.test_users]
    users = np.unique(np.concatenate(parts))
    keep = source_keep(split.dataset, split.target_domain)
    items = keep_domains(source_inputs(split, users, max_len), keep).numpy()
    return VectorLookup(users, frozen_vectors(encoder, items, readout).astype(np.float64))


#: fit(split) -> lam -> ScoreFn: whatever does not depend on lambda is fitted once per split
RidgeFamily = Callable[[CrossDomainSplit], Callable[[float], ScoreFn]]


def vector_ridge_family(vectors: VectorLookup) -> RidgeFamily:
    """:func:`~training.cross_domain_task.vector_ridge_solver` on ``split.train_users``' vectors,
    scoring ``split``'s candidates; the lambda-free part is computed once per split."""

    def fit(split: CrossDomainSplit) -> Callable[[float], ScoreFn]:
        solve = vector_ridge_solver(vectors(split.train_users),
                                    split.target_matrix(split.train_users))

        def at(lam: float) -> ScoreFn:
            weight, bias = solve(lam)
            return lambda users: vectors(users) @ weight.T + bias

        return at

    return fit


def bag_plus_vector_family(vectors: VectorLookup) -> RidgeFamily:
    """The ``ridge`` baseline on the source bag with the frozen vector appended.

    The vector block is standardised on ``split.train_users`` and scaled so that its mean
    squared norm equals the binary bag rows' (their mean item count): neither block dominates
    the shared penalty. Everything else is the baseline's solver (``fit_ridge``), whose
    eigendecomposition is computed once per split and serves every lambda.
    """

    def fit(split: CrossDomainSplit) -> Callable[[float], ScoreFn]:
        bags = split.source_matrix(split.train_users)
        mean, std = column_scale(vectors(split.train_users))
        scale = float(np.sqrt(max(bags.getnnz(axis=1).mean(), 1.0) / vectors.vectors.shape[1]))

        def features(users: np.ndarray) -> sp.csr_matrix:
            block = (vectors(users) - mean) / std * scale
            return sp.hstack([split.source_matrix(users), sp.csr_matrix(block)], format="csr")

        train = features(split.train_users)
        solver = fit_ridge(train, split.target_matrix(split.train_users),
                           columns=np.arange(train.shape[1]))
        return lambda lam: lambda users: solver.scores(features(users), lam)

    return fit


def _best_lambda(family: RidgeFamily, split: CrossDomainSplit, k: int) -> float:
    """Lambda by NDCG@k on the P3 validation round (ties: smaller), as the ridge baseline."""
    assert split.validation is not None
    return best_lambda(validation_ndcg(family(split.validation), split.validation, k))


def _ranking_summary(result: dict[str, Any], k: int, **extra: Any) -> dict[str, Any]:
    return {name: result[f"{name}@{k}"] for name in ("ndcg", "recall", "hr")} | extra


def probe_cross_domain(encoder: NextItNet, split: CrossDomainSplit, max_len: int,
                       k: int = K) -> dict[str, Any]:
    """``ridge`` on the source bag vs the same ridge on each frozen readout and on the bag with
    the mean readout appended (P3 test users).

    Lambdas come from the P3 validation round for all, as the baseline's protocol says; the
    per-user NDCG@k differences are against ``ridge``.
    """
    if split.validation is None:
        raise ValueError("the P3 split has no validation round to tune on")
    lam, _ = select_lambda(split, k)
    ridge = evaluate_cross_domain(ridge_scorer(split, lam), split, k)
    ridge_users = np.asarray(ridge["per_user"][f"ndcg@{k}"])
    out: dict[str, Any] = {"ridge": _ranking_summary(ridge, k, **{"lambda": lam})}
    models: list[tuple[str, RidgeFamily]] = []
    for readout in CROSS_DOMAIN_READOUTS:
        vectors = source_vectors(encoder, split, max_len, readout)
        models.append((f"ridge-on-{readout}", vector_ridge_family(vectors)))
        if readout == "mean":
            models.append(("ridge-on-bag+mean", bag_plus_vector_family(vectors)))
    for name, family in models:
        best = _best_lambda(family, split, k)
        result = evaluate_cross_domain(family(split)(best), split, k)
        out[name] = _ranking_summary(
            result, k, **{"lambda": best, "minus_ridge": paired_users(
                np.asarray(result["per_user"][f"ndcg@{k}"]), ridge_users)})
        logger.info("probe %s %s: NDCG@%d %.4f (ridge %.4f)", split.target_domain, name, k,
                    result[f"ndcg@{k}"]["mean"], ridge[f"ndcg@{k}"]["mean"])
    return out


def probe_run(run_dir: str | Path, cfg: ExperimentConfig, dataset: PreparedDataset,
              encoder: NextItNet) -> dict[str, Any]:
    """Probe every profile and cross-domain task of the run's config; JSON-ready."""
    profile = [t for t in cfg.tasks if t.kind == "profile" and t.attribute]
    cross = [t for t in cfg.tasks if t.kind == "cross_domain" and t.target_domain]
    result: dict[str, Any] = {"run": str(run_dir), "max_len": cfg.model.max_len, "tasks": {},
                              "cross_domain": {}}
    if profile:
        items = profile_inputs(dataset, np.arange(dataset.num_users), cfg.model.max_len).numpy()
        vectors = {readout: frozen_vectors(encoder, items, readout) for readout in PROBE_READOUTS}
        vectors["tfidf-svd"] = tfidf_svd(dataset, encoder.dim, cfg.seed)
        result["tasks"] = {t.name: probe_attribute(vectors, dataset, str(t.attribute), t.buckets)
                           for t in profile}
        result["tasks_low_label"] = {
            t.name: probe_attribute(vectors, dataset, str(t.attribute), t.buckets, low_label=True)
            for t in profile if t.low_label}
    for task in cross:
        split = cross_domain_split(dataset, str(task.target_domain))
        result["cross_domain"][task.name] = probe_cross_domain(encoder, split, cfg.model.max_len,
                                                               cfg.eval.k)
    return result


def probe_run_dir(run_dir: str | Path) -> dict[str, Any]:
    """Load a finished run (config, prepared data, pretrained encoder) and probe it."""
    from uservec.training.checkpoint import load_encoder
    from uservec.training.config import read_run_config
    from uservec.training.data.prepare import load_run_dataset

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    dataset = load_run_dataset(cfg.data, run_dir)
    encoder, _ = load_encoder(run_dir / "pretrain" / "best.pt")
    return probe_run(run_dir, cfg, dataset, encoder)


def probe_table(result: dict[str, Any]) -> str:
    """Markdown: profile tasks (one row per readout; ``tfidf+…`` rows add their gain over
    ``tfidf``), then cross-domain tasks (``ridge`` and ``ridge-on-…`` with per-user gains)."""
    lines = []
    if result.get("tasks"):
        lines += ["| task | readout | lr accuracy | lr_bal macro-F1 | "
                  "minus tfidf, per fold (wins) |", "|---|---|---|---|---|"]
    regimes = [(task, readouts) for task, readouts in result.get("tasks", {}).items()]
    regimes += [(f"{task}, 10% labels", readouts)
                for task, readouts in result.get("tasks_low_label", {}).items()]
    for task, readouts in regimes:
        for readout, scores in readouts.items():
            acc, f1 = scores["lr_accuracy"], scores["lr_bal_macro_f1"]
            gain = ""
            if "minus_tfidf" in scores:
                gain = " / ".join(
                    f"{d['diff_mean']:+.3f} ({d['wins']}/{len(d['per_fold'])})"
                    for d in (scores["minus_tfidf"]["lr_accuracy"],
                              scores["minus_tfidf"]["lr_bal_macro_f1"]))
            lines.append(f"| {task} | {readout} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
                         f"{f1['mean']:.3f} ± {f1['std']:.3f} | {gain} |")
    if result.get("cross_domain"):
        if lines:
            lines.append("")
        lines += ["| task | model | NDCG@10 | Recall@10 | lambda | minus ridge, per user "
                  "(wins/losses, Wilcoxon p) |", "|---|---|---|---|---|---|"]
    for task, models in result.get("cross_domain", {}).items():
        for name, scores in models.items():
            gain = ""
            if "minus_ridge" in scores:
                d = scores["minus_ridge"]
                gain = (f"{d['diff_mean']:+.4f} ({d['wins']}/{d['losses']}, "
                        f"p {_p(d.get('wilcoxon_pvalue'))})")
            lines.append(f"| {task} | {name} | {scores['ndcg']['mean']:.4f} ± "
                         f"{scores['ndcg']['se']:.4f} | {scores['recall']['mean']:.4f} | "
                         f"{scores['lambda']:g} | {gain} |")
    return "\n".join(lines)


def _p(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}"
