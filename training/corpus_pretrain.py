"""Pretraining with another population: its sequences, and its labels as auxiliary heads.

With ``[pretrain.corpus]`` the set objective's windows come from the corpus users (and, unless
``include_task_users = false``, the task dataset's users); with ``aux_weight`` > 0 every window of
a labelled corpus user also trains a classification head per ``label_tasks`` entry on the mean
readout of its hidden states (multi-task: the backbone learns the item set and the corpus users'
attributes). Task users' labels are never read here: P2 pretraining sees no label of the
population it is evaluated on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from uservec.training.batching import NextItemWindows, SetWindows
from uservec.training.config import CorpusConfig, PretrainConfig, TaskConfig
from uservec.training.data.corpus import Corpus
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.bags import binary_matrix
from uservec.training.evaluation.profile_split import column_labels
from uservec.training.model import ClassificationHead, NextItemHead, read_out
from uservec.training.objectives import bag_loss, next_item_loss, set_loss


@dataclass(frozen=True, eq=False)
class AuxTask:
    """One corpus attribute an auxiliary head predicts."""

    name: str
    classes: np.ndarray
    #: (corpus users,) class index, -1 where the corpus user has no label
    codes: np.ndarray


@dataclass(frozen=True, eq=False)
class PretrainCorpus:
    """What pretraining takes from a corpus (built by :func:`pretrain_corpus`)."""

    corpus: Corpus
    include_task_users: bool
    aux: tuple[AuxTask, ...] = ()
    aux_weight: float = 0.0
    summary: dict[str, object] = field(default_factory=dict)

    def vocab_bags(self, vocab_size: int) -> sp.csr_matrix:
        """(corpus users, V) binary bags over the task vocabulary (for the SVD item init)."""
        lengths = np.array([len(s) for s in self.corpus.sequences])
        owner = np.repeat(np.arange(lengths.size), lengths)
        items = np.concatenate(self.corpus.sequences) if lengths.sum() else np.zeros(0, np.int64)
        return binary_matrix(owner, items, (lengths.size, vocab_size))


def aux_tasks(corpus: Corpus, tasks: Sequence[TaskConfig], names: Sequence[str]) -> list[AuxTask]:
    """The auxiliary tasks: each named profile task's attribute, read from the corpus users."""
    by_name = {task.name: task for task in tasks}
    out = []
    for name in names:
        task = by_name.get(name)
        if task is None or task.kind != "profile" or task.attribute is None:
            raise ValueError(f"pretrain.corpus.label_tasks: {name!r} is not a profile task of "
                             f"this config (have {sorted(by_name)})")
        if corpus.users is None or task.attribute not in corpus.users.columns:
            raise ValueError(f"pretrain.corpus: the corpus has no user attribute "
                             f"{task.attribute!r} for task {name!r}")
        labels = column_labels(corpus.users[task.attribute], task.buckets)
        codes = np.full(len(corpus.sequences), -1, dtype=np.int64)
        codes[labels.users] = labels.codes()
        out.append(AuxTask(name, labels.classes, codes))
    return out


def pretrain_corpus(config: CorpusConfig, corpus: Corpus,
                    tasks: Sequence[TaskConfig]) -> PretrainCorpus:
    """The pretraining view of a loaded corpus (labels only when ``aux_weight`` > 0)."""
    aux = aux_tasks(corpus, tasks, config.label_tasks) if config.aux_weight > 0 else []
    summary = {**corpus.summary, "include_task_users": config.include_task_users,
               "aux_tasks": {a.name: int((a.codes >= 0).sum()) for a in aux},
               "aux_weight": config.aux_weight}
    return PretrainCorpus(corpus, config.include_task_users, tuple(aux), config.aux_weight,
                          summary)


class AuxHeads(nn.Module):
    """One classification head per auxiliary task, on the mean readout."""

    def __init__(self, dim: int, tasks: Sequence[AuxTask]) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({t.name: ClassificationHead(dim, t.classes.size, 0.0)
                                    for t in tasks})

    def forward(self, user: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(user) for name, head in self.heads.items()}


def aux_loss(hidden: torch.Tensor, items: torch.Tensor, owners: torch.Tensor,
             heads: AuxHeads, codes: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum over auxiliary tasks of the mean cross-entropy over labelled corpus windows.

    hidden (B, L, D) over ``items`` (B, L); ``owners`` (B,) corpus user of each window (-1: a
    task user, never labelled here); ``codes[name]`` (corpus users,) class index or -1.
    """
    total = hidden.sum() * 0.0
    corpus_rows = owners >= 0
    if not bool(corpus_rows.any()):
        return total
    user = read_out(hidden[corpus_rows], items[corpus_rows], "mean")  # (N, D)
    logits = heads(user)
    for name, task_codes in codes.items():
        targets = task_codes[owners[corpus_rows]]  # (N,)
        known = targets >= 0
        if bool(known.any()):
            total = total + F.cross_entropy(logits[name][known], targets[known])
    return total


def batch_loss(hidden: torch.Tensor, inputs: torch.Tensor, targets: torch.Tensor,
               owners: torch.Tensor | None, head: NextItemHead, cfg: PretrainConfig,
               negatives_rng: torch.Generator, aux: AuxHeads | None = None,
               aux_codes: dict[str, torch.Tensor] | None = None,
               aux_weight: float = 0.0) -> torch.Tensor:
    """One batch's pretraining loss: the set objective (``owners`` given: targets (B, K)) plus
    the auxiliary heads, or next-item (targets (B, L)) plus the optional bag objective."""
    if owners is not None:
        loss = set_loss(hidden, inputs, targets, head)
        if aux is not None and aux_codes and aux_weight > 0:
            loss = loss + aux_weight * aux_loss(hidden, inputs, owners, aux, aux_codes)
        return loss
    loss = next_item_loss(hidden, targets, head, cfg.loss, cfg.num_negatives, negatives_rng)
    if cfg.bag_weight > 0:
        loss = loss + cfg.bag_weight * bag_loss(hidden, inputs, targets, head)
    return loss


def pretraining_examples(dataset: PreparedDataset, length: int, cfg: PretrainConfig,
                         objective: str, corpus: PretrainCorpus | None = None,
                         ) -> NextItemWindows | SetWindows:
    """The training examples of ``objective`` (set windows are drawn anew every epoch)."""
    if objective == "set":
        return SetWindows(dataset, length, cfg.set_holdout, cfg.set_max_targets,
                          () if corpus is None else corpus.corpus.sequences,
                          True if corpus is None else corpus.include_task_users)
    return NextItemWindows(dataset, length)
