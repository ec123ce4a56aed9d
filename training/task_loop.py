"""The training loop shared by every method and task kind, and the batching it runs on.

Rows are batched by length (little padding to compute) and trimmed of all-padding columns, which
is exact: the encoder is causal and masks padding. With a validator the loop early-stops and
restores the best epoch's parameters.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from uservec.contract.ids import PAD_ID
from uservec.training.device import (
    active_device,
    autocast,
    on_device,
    task_device,
    to_active,
    to_cpu,
)
from uservec.training.task_settings import AdaptSettings, Hyperparameters


def sequence_lengths(items: torch.Tensor) -> torch.Tensor:
    """(N, L) left-padded -> (N,) number of real events."""
    return (items != PAD_ID).sum(1)


def trim_padding(items: torch.Tensor) -> torch.Tensor:
    """Drop the all-PAD left columns of a batch (exact: the encoder is causal and masks PAD)."""
    longest = max(1, int(sequence_lengths(items).max())) if items.numel() else 1
    return items[:, items.shape[1] - longest :]


def length_batches(
    lengths: torch.Tensor, batch_size: int, generator: torch.Generator | None
) -> list[torch.Tensor]:
    """Row batches of similar length (little padding to compute), in a random order.

    Rows are shuffled, stably sorted by length, cut into batches, and the batches shuffled; with
    no generator the batches stay sorted (evaluation).
    """
    n = lengths.numel()
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    order = order[torch.argsort(lengths[order], stable=True)]
    batches = list(torch.split(order, batch_size))
    if generator is not None:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
    return batches


@torch.no_grad()
def batched_forward(
    forward: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    batch_size: int = 256,
    sequences: bool = True,
) -> torch.Tensor:
    """``forward`` over all rows of ``inputs`` (sequences are batched by length and trimmed)."""
    if inputs.shape[0] == 0:
        raise ValueError("no rows to run")
    if not sequences:
        return torch.cat([to_cpu(forward(to_active(b))) for b in torch.split(inputs, batch_size)])
    outputs: list[torch.Tensor] = []
    rows: list[torch.Tensor] = []
    for batch in length_batches(sequence_lengths(inputs), batch_size, None):
        outputs.append(to_cpu(forward(to_active(trim_padding(inputs[batch])))))
        rows.append(batch)
    stacked = torch.cat(outputs)
    result = torch.empty_like(stacked)
    result[torch.cat(rows)] = stacked
    return result


@dataclass
class TrainResult:
    """Outcome of one training run; the trained parameters hold the best (or last) epoch."""

    epochs_run: int
    best_epoch: int
    best_score: float | None
    history: list[dict[str, float]]
    seconds: float


class EarlyStopping:
    """The best validation score so far, its epoch and a copy of its parameters."""

    def __init__(self, params: list[nn.Parameter], patience: int) -> None:
        self.params = params
        self.patience = patience
        self.best_score = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.best_state: list[torch.Tensor] | None = None

    def update(self, epoch: int, score: float) -> bool:
        """Record ``score`` after ``epoch`` (0 = untrained); True when patience has run out."""
        if score > self.best_score:
            self.best_score, self.best_epoch, self.bad_epochs = score, epoch, 0
            self.best_state = [p.detach().clone() for p in self.params]
        else:
            self.bad_epochs += 1
        return self.bad_epochs >= self.patience

    def restore(self) -> None:
        """Put the best epoch's parameters back (nothing to do if no epoch was validated)."""
        if self.best_state is None:
            return
        with torch.no_grad():
            for param, value in zip(self.params, self.best_state, strict=True):
                param.copy_(value)


def train_epoch(
    forward: Callable[[torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    params: list[nn.Parameter],
    inputs: torch.Tensor,
    lengths: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    settings: AdaptSettings,
    generator: torch.Generator,
    sequences: bool,
) -> float:
    """One pass over shuffled length batches; returns the mean loss per row."""
    total, count = 0.0, 0
    for rows in length_batches(lengths, settings.batch_size, generator):
        batch = trim_padding(inputs[rows]) if sequences else inputs[rows]
        with autocast(active_device()):
            outputs = forward(to_active(batch))
        loss = loss_fn(to_cpu(outputs), rows)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        total += float(loss.detach()) * rows.numel()
        count += rows.numel()
    return total / max(count, 1)


def train_loop(
    forward: Callable[[torch.Tensor], torch.Tensor],
    module: nn.Module,
    groups: list[dict[str, Any]],
    inputs: torch.Tensor,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    hp: Hyperparameters,
    settings: AdaptSettings,
    seed: int,
    epochs: int,
    validate: Callable[[], float] | None = None,
    sequences: bool = True,
    validate_untrained: bool = False,
    resample: Callable[[torch.Generator], torch.Tensor] | None = None,
) -> TrainResult:
    """AdamW over the parameter ``groups`` (each with its ``lr``) for up to ``epochs`` epochs.

    ``loss_fn(outputs, rows)`` gets the outputs of a batch and its row indices. With ``validate``
    the run stops after ``settings.patience`` epochs without improvement and the parameters are
    restored to the best epoch (epoch 0, the untrained model, competes when
    ``validate_untrained``); without it, exactly ``epochs`` epochs run. ``resample`` draws new
    (N, L) training inputs at the start of every epoch (data augmentation). The fit runs on
    ``device.task_device()`` (``pretrain.device``); ``module`` is back on the CPU afterwards.
    """
    with on_device(module, task_device()):
        started = time.perf_counter()
        params = [p for group in groups for p in group["params"]]
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        generator = torch.Generator().manual_seed(seed)
        lengths = sequence_lengths(inputs) if sequences else torch.zeros(inputs.shape[0])
        stopping = EarlyStopping(params, settings.patience)
        history: list[dict[str, float]] = []
        module.eval()
        if validate is not None and validate_untrained:
            # epoch 0: P3's untrained head is the popularity ranking, which may already win
            history.append({"epoch": 0, "valid": float(validate())})
            stopping.update(0, history[-1]["valid"])
        epoch = 0
        for epoch in range(1, epochs + 1):
            if resample is not None:
                inputs = resample(generator)
                lengths = sequence_lengths(inputs)
            module.train()
            loss = train_epoch(forward, optimizer, params, inputs, lengths, loss_fn, settings,
                               generator, sequences)
            module.eval()
            history.append({"epoch": epoch, "loss": loss})
            if validate is not None:
                history[-1]["valid"] = float(validate())
                if stopping.update(epoch, history[-1]["valid"]):
                    break
        module.eval()
        stopping.restore()
        return TrainResult(
            epochs_run=epoch,
            best_epoch=stopping.best_epoch if validate is not None else epoch,
            best_score=stopping.best_score if validate is not None else None,
            history=history,
            seconds=time.perf_counter() - started,
        )
