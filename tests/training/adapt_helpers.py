"""Shared by the adapt / profile-task / cross-domain-task tests: a tiny random encoder and data."""

from __future__ import annotations

import numpy as np
import torch

from uservec.contract.ids import NUM_RESERVED
from uservec.training.adapt import AdaptSettings, Pretrained
from uservec.training.model import NextItemHead, NextItNet

VOCAB, DIM, MAX_LEN = 64, 16, 8
# tiny data gives few optimizer steps: large learning rates, a faster head
FAST = AdaptSettings(max_epochs=6, patience=6, adapter_lr_grid=(3e-3,),
                     fine_tune_lr_grid=(3e-3,), scratch_lr_grid=(3e-3,), head_only_lr_grid=(3e-2,),
                     head_lr_scale=10.0)


def random_pretrained(vocab_size: int = VOCAB, seed: int = 0) -> Pretrained:
    """A randomly initialised 'pretrained' encoder (the tests need its shape, not its quality)."""
    torch.manual_seed(seed)
    encoder = NextItNet(vocab_size, DIM, (1, 2), kernel_size=3)
    head = NextItemHead(DIM, vocab_size)
    encoder.eval()
    return Pretrained(encoder, head.output.weight.detach().clone(),
                      head.output.bias.detach().clone(), "random", {})


def labelled_data(make_dataset, num_users: int):
    """Class 'a' users (2 in 3) mostly see items 2..32, class 'b' users items 33..63."""
    rng = np.random.default_rng(0)
    sequences, labels = [], []
    half = NUM_RESERVED + (VOCAB - NUM_RESERVED) // 2
    for user in range(num_users):
        label = "a" if user % 3 else "b"
        low, high = (NUM_RESERVED, half) if label == "a" else (half, VOCAB)
        length = int(rng.integers(4, 12))
        seq = [int(rng.integers(low, high)) if rng.random() < 0.85 else
               int(rng.integers(NUM_RESERVED, VOCAB)) for _ in range(length)]
        sequences.append(seq)
        labels.append(label)
    dataset = make_dataset(sequences, VOCAB)
    return dataset, np.arange(num_users), np.array(labels), np.array(["a", "b"])


def backbone_state(encoder: NextItNet) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in encoder.state_dict().items()
            if ".patches." not in k and ".task_norms." not in k}
