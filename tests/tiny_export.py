"""Tiny seeded export inputs: 2-domain vocabulary, fused model with every head kind, sequences."""

from __future__ import annotations

import numpy as np
import torch

from uservec.contract.ids import NUM_RESERVED, PAD_ID, item_key
from uservec.contract.vocab import Vocabulary
from uservec.export.bundle import TaskExport
from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
from uservec.training.model import ClassificationHead, ItemScoringHead, NextItNet

DIM, MAX_LEN, VOCAB_SIZE = 16, 8, 64
SOURCE, TARGET = "books", "games"

# Tiny convolutions on a shared 2-core machine run ~30x slower with torch's default thread pool.
torch.set_num_threads(1)


def tiny_vocab() -> Vocabulary:
    n_real = VOCAB_SIZE - NUM_RESERVED
    keys = [item_key(str(i), SOURCE if i % 2 else TARGET) for i in range(n_real)]
    return Vocabulary(tuple(keys))


def _target_keys(vocab: Vocabulary) -> tuple[str, ...]:
    return tuple(k for k in vocab.keys if k.startswith(TARGET))


def build_fused(vocab: Vocabulary, seed: int = 0) -> FusedUserModel:
    torch.manual_seed(seed)
    encoder = NextItNet(vocab.size, DIM, (1, 2, 1, 2), 3)
    encoder.add_task("gender", bottleneck=4, placement="serial", own_layer_norms=True,
                     item_rank=2)
    # both placements, and an item patch, go through the export and parity checks (gender
    # serial with an item patch, games parallel without)
    encoder.add_task("games", bottleneck=4, placement="parallel", own_layer_norms=True)
    keep = torch.from_numpy(vocab.domain_ids() == vocab.domains().index(SOURCE))
    fused = FusedUserModel(
        encoder,
        {
            "gender": ProfileTask(ClassificationHead(DIM, 2), patches="gender"),
            "age": ProfileTask(ClassificationHead(DIM, 7), patches=None),
        },
        {
            "games": RecommendTask(
                ItemScoringHead(DIM, len(_target_keys(vocab))),
                patches="games",
                source_keep=keep,
            )
        },
    )
    # fresh patches and item biases start at zero: perturb them so every head computes something
    with torch.no_grad():
        for param in fused.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return fused.eval()


def make_items(n: int, seed: int = 0, max_len: int = MAX_LEN) -> np.ndarray:
    """Left-padded sequences of random length 1..max_len over the real ids."""
    rng = np.random.default_rng(seed)
    out = np.full((n, max_len), PAD_ID, dtype=np.int64)
    for row in range(n):
        length = int(rng.integers(1, max_len + 1))
        out[row, max_len - length :] = rng.integers(NUM_RESERVED, VOCAB_SIZE, size=length)
    return out


def tiny_tasks(vocab: Vocabulary) -> list[TaskExport]:
    """Metadata for :func:`build_fused`'s heads."""
    target = _target_keys(vocab)
    return [
        TaskExport("gender", "profile", labels=("F", "M"), class_prior=(0.4, 0.6),
                   prior_power=1.0),
        TaskExport("age", "profile", labels=tuple(f"a{i}" for i in range(7))),
        TaskExport(
            "games",
            "recommend",
            domain=TARGET,
            source_domains=(SOURCE,),
            item_keys=target,
            popularity=tuple(reversed(target)),
        ),
    ]
