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

It costs seconds, so it is the first thing to run before paying for adapters: when every
readout is near the majority class, no head on top of it will do much better, and the fix is in
pretraining. Results go to ``RUN_DIR/probe.json``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.adapt import profile_inputs
from training.baselines import (
    ProfileFold,
    balanced_weight,
    evaluate_profile,
    fit_predict,
    select_c,
)
from training.config import ExperimentConfig
from training.data.dataset import PreparedDataset
from training.model import NextItNet, read_out
from training.protocols import profile_folds, profile_labels
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

    from training.baselines import tfidf_features, user_item_matrix

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
        train, test = self.vectors[fold.train_users], self.vectors[fold.test_users]
        mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
        train, test = (train - mean) / std, (test - mean) / std
        c, _ = select_c(train, fold.train_labels, fold.classes, self.balanced)
        return fit_predict(train, fold.train_labels, test, c, balanced_weight(self.balanced))


def probe_attribute(
    vectors: dict[str, np.ndarray], dataset: PreparedDataset, attribute: str,
    buckets: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Mean ± std accuracy (``lr``) and macro-F1 (``lr_bal``) per readout on the P2 folds."""
    labels = profile_labels(dataset, attribute, buckets)
    folds = profile_folds(labels.users, labels.labels)
    result: dict[str, Any] = {}
    for readout, matrix in vectors.items():
        plain = evaluate_profile(LinearProbe(matrix, balanced=False), labels, folds)
        balanced = evaluate_profile(LinearProbe(matrix, balanced=True), labels, folds)
        result[readout] = {"lr_accuracy": plain["accuracy"], "lr_bal_macro_f1":
                           balanced["macro_f1"]}
        logger.info("probe %s %s: lr accuracy %.3f, lr_bal macro-F1 %.3f", attribute, readout,
                    plain["accuracy"]["mean"], balanced["macro_f1"]["mean"])
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
    """Markdown: one row per task and readout."""
    lines = ["| task | readout | lr accuracy | lr_bal macro-F1 |", "|---|---|---|---|"]
    for task, readouts in result["tasks"].items():
        for readout, scores in readouts.items():
            acc, f1 = scores["lr_accuracy"], scores["lr_bal_macro_f1"]
            lines.append(f"| {task} | {readout} | {acc['mean']:.3f} ± {acc['std']:.3f} | "
                         f"{f1['mean']:.3f} ± {f1['std']:.3f} |")
    return "\n".join(lines)
