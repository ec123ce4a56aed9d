"""Pretraining throughput: sequences/s of one optimiser step (forward, full-softmax loss,
backward, Adam) over sequence length and model width, one torch thread (the pretraining default).

Each cell times a few seconds of steps on random full-length sequences after a warm-up step;
speed does not depend on the data's content.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tqdm.auto import tqdm

from uservec.bench.common import DEFAULT_MODEL, QUICK_MODEL, SERVER_CORE, pinned

logger = logging.getLogger(__name__)

BATCH_SIZE = 32


def step_throughput(dim: int, length: int, n_blocks: int, vocab_size: int, seconds: float,
                    seed: int) -> dict[str, float]:
    """Sequences/s and ms per step of pretraining steps at one size."""
    import torch

    from uservec.training.model import NextItemHead, NextItNet
    from uservec.training.objectives import next_item_loss

    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    dilations = tuple(2 ** (i % 4) for i in range(n_blocks))
    model, head = NextItNet(vocab_size, dim, dilations), NextItemHead(dim, vocab_size)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    items = torch.randint(2, vocab_size, (BATCH_SIZE, length + 1), generator=generator)
    inputs, targets = items[:, :-1], items[:, 1:]

    def step() -> None:
        loss = next_item_loss(model(inputs), targets, head)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    step()
    steps, start = 0, time.perf_counter()
    while steps < 2 or time.perf_counter() - start < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    return {"seq_per_s": steps * BATCH_SIZE / elapsed, "ms_per_step": elapsed / steps * 1000}


def run_train_speed(quick: bool, seed: int) -> dict[str, Any]:
    """Table over (length, width) at the default depth."""
    import torch

    base = QUICK_MODEL if quick else DEFAULT_MODEL
    lengths = [base.max_len] if quick else [25, 50, 100]
    widths = [base.dim] if quick else [32, 64, 128]
    seconds = 0.2 if quick else 3.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows = []
    try:
        with pinned(SERVER_CORE):
            for length in tqdm(lengths, desc="train speed", leave=False):
                for dim in widths:
                    cell = step_throughput(dim, length, base.n_blocks, base.n_items + 2, seconds,
                                           seed)
                    rows.append({"length": length, "dim": dim, **cell})
    finally:
        torch.set_num_threads(threads)
    return {"batch_size": BATCH_SIZE, "depth_blocks": base.n_blocks, "threads": 1,
            "vocab_size": base.n_items + 2, "loss": "full softmax", "rows": rows}
