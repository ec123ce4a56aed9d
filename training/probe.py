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

from training.adapt import profile_inputs
from training.baselines import (
    LogisticPredictor,
    PredictFn,
    ProfileFold,
    balanced_weight,
    evaluate_profile,
    fit_predict,
    select_c,
    tfidf_features,
    user_item_matrix,
)
from training.config import ExperimentConfig
from training.data.dataset import PreparedDataset
from training.model import NextItNet, read_out
from training.protocols import profile_folds, profile_labels
from training.tasks import paired_folds, per_fold
from uservec.ids import PAD_ID

logger = logging.getLogger(__name__)

PROBE_READOUTS = ("last", "mean", "item-mean")


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
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
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


def probe_attribute(
    vectors: dict[str, np.ndarray], dataset: PreparedDataset, attribute: str,
    buckets: Sequence[float] | None = None, bag_plus: str | None = "mean",
) -> dict[str, Any]:
    """Mean ± std accuracy (``lr``) and macro-F1 (``lr_bal``) per readout on the P2 folds.

    With ``bag_plus`` (a key of ``vectors``), also the row ``tfidf+<bag_plus>``
    (:class:`BagPlusVectorProbe`) and, beside it, the plain TF-IDF baselines as ``tfidf``,
    with the per-fold difference between the two, which is what the row is for.
    """
    labels = profile_labels(dataset, attribute, buckets)
    folds = profile_folds(labels.users, labels.labels)
    probes: dict[str, Callable[[bool], PredictFn]] = {
        readout: partial(LinearProbe, matrix) for readout, matrix in vectors.items()}
    if bag_plus is not None:
        matrix = user_item_matrix(dataset)
        probes["tfidf"] = partial(LogisticPredictor, dataset)
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


def probe_run(run_dir: str | Path, cfg: ExperimentConfig, dataset: PreparedDataset,
              encoder: NextItNet) -> dict[str, Any]:
    """Probe every profile task of the run's config with every readout; JSON-ready."""
    items = profile_inputs(dataset, np.arange(dataset.num_users), cfg.model.max_len).numpy()
    vectors = {readout: frozen_vectors(encoder, items, readout) for readout in PROBE_READOUTS}
    vectors["tfidf-svd"] = tfidf_svd(dataset, encoder.dim, cfg.seed)
    tasks = [t for t in cfg.tasks if t.kind == "profile" and t.attribute]
    return {
        "run": str(run_dir),
        "max_len": cfg.model.max_len,
        "tasks": {t.name: probe_attribute(vectors, dataset, str(t.attribute), t.buckets)
                  for t in tasks},
    }


def probe_run_dir(run_dir: str | Path) -> dict[str, Any]:
    """Load a finished run (config, prepared data, pretrained encoder) and probe it."""
    from training.checkpoint import load_encoder
    from training.config import read_run_config
    from training.data.prepare import load_run_dataset

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    dataset = load_run_dataset(cfg.data, run_dir)
    encoder, _ = load_encoder(run_dir / "pretrain" / "best.pt")
    return probe_run(run_dir, cfg, dataset, encoder)


def probe_table(result: dict[str, Any]) -> str:
    """Markdown: one row per task and readout; ``tfidf+…`` rows add their gain over ``tfidf``."""
    lines = ["| task | readout | lr accuracy | lr_bal macro-F1 | minus tfidf, per fold (wins) |",
             "|---|---|---|---|---|"]
    for task, readouts in result["tasks"].items():
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
    return "\n".join(lines)
