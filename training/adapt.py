"""Task training on a pretrained NextItNet: the four methods of PROTOCOLS.md behind one switch.

``method`` picks what is trained on top of the pretrained encoder:

* ``adapter``: backbone frozen; bottleneck patches in every residual block, the task's own layer
  norms and the head are trained (PeterRec). Tasks are added one after another to the *same*
  backbone object and never change each other's outputs.
* ``head-only``: backbone frozen, only the head (trained on precomputed user vectors: seconds).
* ``fine-tune-all``: every parameter, starting from a deep copy of the pretrained weights.
* ``scratch``: the same architecture, randomly initialised.

The task kinds build on this: :mod:`training.profile_task` (P2, a classification head per
profile attribute) and :mod:`training.cross_domain_task` (P3, a new target-item table), each
turning its data into a :class:`TaskProblem` (inputs, head, loss, validation) for
:func:`fit_task`.

Hyperparameters (learning rate, weight decay, bottleneck, class weighting) and the number of epochs
are chosen on validation users *inside* the training data (a stratified holdout of the training
fold for P2, the P3 validation round for P3). The early-stopped winner is used as it is, or, with
``refit`` (always for P3, whose candidates change, and for the exported model), refitted on every
training user for the chosen number of epochs. Settings come from ``extra["adapt"]`` of the
experiment config (:class:`AdaptSettings`, every key optional)::

    pretrained = load_pretrained("runs/ml100k/pretrain/best.pt")
    settings = adapt_settings(cfg)
    setup, hp, tuning, seconds = fit_task("adapter", pretrained, tune, refit, settings, "gender")
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from uservec.contract import decision
from uservec.contract.fingerprint import code_version
from uservec.contract.ids import PAD_ID
from uservec.training.checkpoint import load_checkpoint, load_encoder
from uservec.training.config import ExperimentConfig, build_dataclass
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.model import (
    PLACEMENTS,
    READOUTS,
    TASK_KEY,
    BottleneckPatch,
    ItemPatch,
    NextItNet,
    Readout,
    keep_domains,
)

logger = logging.getLogger(__name__)

METHODS: tuple[str, ...] = ("adapter", "head-only", "fine-tune-all", "scratch")
#: methods that leave the pretrained backbone frozen (and can share one backbone object)
FROZEN_METHODS: tuple[str, ...] = ("adapter", "head-only")
SELECT_METRICS: tuple[str, ...] = ("macro_f1", "accuracy", "mean")
ITEM_INITS: tuple[str, ...] = ("popularity", "pretrained", "probe")
HEAD_INITS: tuple[str, ...] = ("random", "probe")


@dataclass(frozen=True)
class AdaptSettings:
    """Task-training settings, read from ``extra["adapt"]`` (every key optional).

    Fields ending in ``_grid`` are tuned on validation users inside the training data; the rest
    are fixed. Learning rates are per method because a frozen backbone tolerates (and a linear
    head on fixed features needs) larger steps than a fully fine-tuned one.
    """

    #: methods run by ``training.tasks.run_tasks``
    methods: tuple[str, ...] = METHODS
    #: adapter: bottleneck width of each patch
    bottleneck_grid: tuple[int, ...] = (8,)
    #: adapter: "serial" (patch after the convolution) or "parallel" (beside it)
    placement: str = "serial"
    #: adapter: placements tuned on validation users like the learning rate (empty = only
    #: ``placement``); PeterRec reports both, and which one suits a task is an empirical question
    placement_grid: tuple[str, ...] = ()
    #: adapter: train a copy of every layer norm per task (PeterRec) instead of sharing them
    own_layer_norms: bool = True
    #: adapter: ranks of the task's item patch (a low-rank correction of the frozen item
    #: embeddings, training.model.ItemPatch) tuned on validation users; 0 = no item patch
    item_rank_grid: tuple[int, ...] = (0,)
    adapter_lr_grid: tuple[float, ...] = (1e-3,)
    head_only_lr_grid: tuple[float, ...] = (1e-2,)
    fine_tune_lr_grid: tuple[float, ...] = (3e-4,)
    scratch_lr_grid: tuple[float, ...] = (1e-3,)
    #: AdamW decoupled weight decay
    weight_decay_grid: tuple[float, ...] = (0.0,)
    #: profile: class weights (n / (C * n_c)) ** power: 0 = unweighted, 1 = "balanced"
    class_weight_grid: tuple[float, ...] = (1.0,)
    #: profile: validation metric for early stopping, the grid and the probe's C
    #: (macro_f1 | accuracy | mean), each read under the decision rule the report scores it with
    select_metric: str = "mean"
    #: profile: share of the labelled training rows held out for validation
    valid_fraction: float = 0.15
    #: profile augmentation: share of training users whose window ends, each epoch, at a random
    #: event of the newer half of their history instead of at their newest event
    crop_probability: float = 0.0
    #: profile augmentation: share of each training user's events dropped, anew every epoch
    event_dropout: float = 0.0
    max_epochs: int = 20
    #: epochs without validation improvement before stopping
    patience: int = 4
    batch_size: int = 64
    grad_clip: float = 1.0
    #: the head's learning rate = this x the method's (not for head-only, where it is all head)
    head_lr_scale: float = 1.0
    head_dropout: float = 0.1
    #: refit the chosen setting on all training users for the chosen epochs (else keep the
    #: early-stopped model trained without the validation users)
    refit: bool = False
    #: P3 target-item table at the start: "popularity" (zero vectors, bias log(1 + training
    #: users per item): the untrained head *is* the popularity ranking), "pretrained" (the
    #: pretrained next-item output layer) or "probe" (ridge from the frozen user vectors to the
    #: target bags, lambda on an inner holdout; see ``probe_item_head``). Scratch always starts
    #: from popularity
    item_init: str = "popularity"
    #: profile: the pretrained methods' head at the start: "random", or "probe" (a class-weighted
    #: logistic regression on the frozen backbone's user vectors, C by inner CV; linear probing
    #: then fine-tuning, LP-FT): training starts from the probe, which competes as epoch 0
    head_init: str = "random"
    #: method of the one final model saved per task for export (adapter | head-only)
    final_method: str = "adapter"
    #: user vector the task head reads: "last" (state after the newest event) or "mean" (average
    #: over the window's events, see training.model.read_out; best with pretrain.item_init = svd)
    readout: Readout = "last"

    def __post_init__(self) -> None:
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown:
            raise ValueError(f"extra.adapt.methods: unknown {unknown}; allowed {list(METHODS)}")
        for placement in (self.placement, *self.placement_grid):
            if placement not in PLACEMENTS:
                raise ValueError(f"extra.adapt.placement must be serial|parallel: {placement!r}")
        if not self.item_rank_grid or min(self.item_rank_grid) < 0:
            raise ValueError("extra.adapt.item_rank_grid must list ranks >= 0 (0 = no item patch)")
        if self.select_metric not in SELECT_METRICS:
            raise ValueError(f"extra.adapt.select_metric must be one of {SELECT_METRICS}")
        if self.head_init not in HEAD_INITS:
            raise ValueError(f"extra.adapt.head_init must be one of {HEAD_INITS}")
        if self.item_init not in ITEM_INITS:
            raise ValueError(f"extra.adapt.item_init must be one of {ITEM_INITS}")
        if self.final_method not in FROZEN_METHODS:
            raise ValueError(f"extra.adapt.final_method must be one of {FROZEN_METHODS}")
        if self.readout not in READOUTS:
            raise ValueError(f"extra.adapt.readout must be one of {list(READOUTS)}")
        if not 0.0 < self.valid_fraction < 1.0:
            raise ValueError("extra.adapt.valid_fraction must be in (0, 1)")

    def lr_grid(self, method: str) -> tuple[float, ...]:
        return {
            "adapter": self.adapter_lr_grid,
            "head-only": self.head_only_lr_grid,
            "fine-tune-all": self.fine_tune_lr_grid,
            "scratch": self.scratch_lr_grid,
        }[method]


def adapt_settings(cfg: ExperimentConfig) -> AdaptSettings:
    """The :class:`AdaptSettings` of an experiment (``extra["adapt"]``, unknown keys rejected)."""
    return build_dataclass(AdaptSettings, dict(cfg.extra.get("adapt", {}) or {}), "extra.adapt")


@dataclass(frozen=True)
class Hyperparameters:
    """One point of the tuning grid; ``epochs`` is filled in once validation has chosen it."""

    lr: float
    weight_decay: float = 0.0
    #: adapter only
    bottleneck: int | None = None
    #: adapter only: "serial" | "parallel"
    placement: str | None = None
    #: adapter only: rank of the item patch (0 = none)
    item_rank: int = 0
    #: profile only: class-weight power (0 = unweighted, 1 = balanced)
    class_weight: float = 0.0
    epochs: int | None = None


def hyperparameter_grid(
    method: str, settings: AdaptSettings, profile: bool
) -> list[Hyperparameters]:
    """Every grid point of ``method`` (in a fixed order: ties go to the earlier point)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    adapter = method == "adapter"
    bottlenecks: Sequence[int | None] = settings.bottleneck_grid if adapter else (None,)
    placements: Sequence[str | None] = (
        (settings.placement_grid or (settings.placement,)) if adapter else (None,)
    )
    ranks: Sequence[int] = settings.item_rank_grid if adapter else (0,)
    weights = settings.class_weight_grid if profile else (0.0,)
    return [
        Hyperparameters(lr=lr, weight_decay=wd, bottleneck=b, placement=pl, item_rank=r,
                        class_weight=cw)
        for r, b, pl, lr, wd, cw in itertools.product(
            ranks, bottlenecks, placements, settings.lr_grid(method),
            settings.weight_decay_grid, weights,
        )
    ]


# --------------------------------------------------------------------------------------------
# Pretrained weights and the task network
# --------------------------------------------------------------------------------------------


@dataclass(eq=False)
class Pretrained:
    """The pretrained encoder (the shared backbone) and its next-item output layer."""

    encoder: NextItNet
    #: (V, D) and (V,) next-item output layer: item vectors in the user-vector space
    output_weight: torch.Tensor | None
    output_bias: torch.Tensor | None
    checkpoint: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_pretrained(checkpoint: str | Path) -> Pretrained:
    """Read the encoder and its next-item output layer from a pretraining checkpoint."""
    encoder, meta = load_encoder(checkpoint)
    head_state = load_checkpoint(checkpoint).get("head", {})
    return Pretrained(
        encoder=encoder,
        output_weight=head_state.get("output.weight"),
        output_bias=head_state.get("output.bias"),
        checkpoint=str(checkpoint),
        meta=meta,
    )


class TaskNetwork(nn.Module):
    """Encoder (+ optional patch set and source-domain filter) -> user vector -> task head.

    The encoder may be the shared backbone: this module then only *refers* to it (a frozen
    backbone is never stepped), so several task networks can sit on one backbone object.
    """

    def __init__(
        self,
        encoder: NextItNet,
        head: nn.Module,
        patches: str | None = None,
        keep: torch.Tensor | None = None,
        readout: Readout = "last",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.patches = patches
        self.readout: Readout = readout
        if keep is not None:
            self.register_buffer("keep", keep.to(torch.bool))
        else:
            self.keep = None

    def user_vector(self, items: torch.Tensor) -> torch.Tensor:
        """items (B, L) left-padded -> (B, D), after dropping non-source events if filtered."""
        if self.keep is not None:
            items = keep_domains(items, self.keep)
        return self.encoder.user_vector(items, task=self.patches, readout=self.readout)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.head(self.user_vector(items))  # (B, C)


def count_parameters(params: Sequence[nn.Parameter]) -> int:
    """Number of scalars in distinct parameters."""
    seen: dict[int, int] = {id(p): p.numel() for p in params}
    return int(sum(seen.values()))


def _task_state_keys(encoder: NextItNet, name: str) -> list[str]:
    """Encoder state-dict keys that belong to task ``name`` (patches, own layer norms, item
    patch)."""
    return [
        key for key in encoder.state_dict()
        if (match := TASK_KEY.match(key)) and match.group(1) == name
    ]


def task_state_dict(encoder: NextItNet, name: str) -> dict[str, torch.Tensor]:
    """The part of the encoder's state dict that task ``name`` trained (for ``final.pt``)."""
    state = encoder.state_dict()
    return {key: state[key].detach().clone() for key in _task_state_keys(encoder, name)}


def add_or_reset_task(
    encoder: NextItNet, name: str, bottleneck: int, placement: str, own_layer_norms: bool,
    item_rank: int = 0,
) -> None:
    """Register task ``name`` on the encoder, or re-initialise it (identity patches) if present.

    Re-initialising only touches the task's own modules, so retraining a task leaves every other
    task of the backbone bitwise unchanged.
    """
    if "." in name or not name:
        raise ValueError(f"task name {name!r} must be non-empty and contain no '.'")
    spec = encoder.tasks.get(name)
    if spec is None:
        encoder.add_task(name, bottleneck, placement,  # type: ignore[arg-type]
                         own_layer_norms, item_rank)
        return
    if (spec.bottleneck, spec.placement, spec.own_layer_norms, spec.item_rank) != (
        bottleneck, placement, own_layer_norms, item_rank
    ):
        raise ValueError(f"task {name!r} exists with a different spec {spec}")
    for block in encoder.blocks:
        for patch in block.patches[name]:
            fresh = BottleneckPatch(encoder.dim, bottleneck)
            patch.load_state_dict(fresh.state_dict())
        if name in block.task_norms:
            block.task_norms[name].load_state_dict(block.norms.state_dict())
    if name in encoder.item_patches:
        fresh_items = ItemPatch(encoder.vocab_size, encoder.dim, item_rank)
        encoder.item_patches[name].load_state_dict(fresh_items.state_dict())


@dataclass(eq=False)
class MethodSetup:
    """A task network ready to train and the parameters that ``method`` trains."""

    network: TaskNetwork
    params: list[nn.Parameter]
    #: trains on precomputed backbone user vectors instead of sequences
    on_features: bool

    def param_groups(self, hp: Hyperparameters, head_lr_scale: float) -> list[dict[str, Any]]:
        """Optimizer groups: the head learns ``head_lr_scale`` times faster than the encoder
        part (a head at the encoder's small learning rate barely leaves the class prior)."""
        head_ids = {id(p) for p in self.network.head.parameters()}
        encoder = [p for p in self.params if id(p) not in head_ids]
        head = [p for p in self.params if id(p) in head_ids]
        groups = [{"params": head, "lr": hp.lr * (head_lr_scale if encoder else 1.0)}]
        return ([{"params": encoder, "lr": hp.lr}] if encoder else []) + groups


def build_method(
    method: str,
    pretrained: NextItNet,
    head: nn.Module,
    hp: Hyperparameters,
    settings: AdaptSettings,
    task_name: str,
    keep: torch.Tensor | None = None,
    seed: int = 0,
    shared: bool = False,
) -> MethodSetup:
    """Wire ``method`` around the pretrained encoder (see the module docstring).

    With ``shared`` the adapter and head-only methods use ``pretrained`` itself (the one backbone
    every exported task reads); otherwise they use a private copy, so evaluation fits leave the
    backbone without stray tasks. fine-tune-all and scratch always own their encoder.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in FROZEN_METHODS:
        encoder = pretrained if shared else copy.deepcopy(pretrained)
        patches = None
        if method == "adapter":
            if hp.bottleneck is None:
                raise ValueError("the adapter method needs a bottleneck size")
            torch.manual_seed(seed)
            add_or_reset_task(encoder, task_name, hp.bottleneck,
                              hp.placement or settings.placement, settings.own_layer_norms,
                              hp.item_rank)
            patches = task_name
        encoder.freeze_backbone()
        task_params = encoder.task_parameters(task_name) if patches else []
        for param in task_params:
            param.requires_grad_(True)
        network = TaskNetwork(encoder, head, patches, keep, settings.readout)
        params = [*task_params, *head.parameters()]
        return MethodSetup(network, params, on_features=method == "head-only")
    if method == "fine-tune-all":
        encoder = copy.deepcopy(pretrained)
    else:
        torch.manual_seed(seed)
        encoder = NextItNet(
            pretrained.vocab_size, pretrained.dim,
            [block.convs[0].conv.dilation[0] for block in pretrained.blocks],
            kernel_size=pretrained.blocks[0].convs[0].conv.kernel_size[0],
            dropout=pretrained.dropout.p,
        )
    encoder.requires_grad_(True)
    network = TaskNetwork(encoder, head, None, keep, settings.readout)
    return MethodSetup(network, [*backbone_parameters(encoder), *head.parameters()],
                       on_features=False)


def backbone_parameters(encoder: NextItNet) -> list[nn.Parameter]:
    """The encoder's own parameters, without any task's patches or layer norms."""
    task_ids = {id(p) for name in encoder.tasks for p in encoder.task_parameters(name)}
    return [p for p in encoder.parameters() if id(p) not in task_ids]


# --------------------------------------------------------------------------------------------
# The training loop shared by every method and task kind
# --------------------------------------------------------------------------------------------


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
        return torch.cat([forward(b) for b in torch.split(inputs, batch_size)])
    outputs: list[torch.Tensor] = []
    rows: list[torch.Tensor] = []
    for batch in length_batches(sequence_lengths(inputs), batch_size, None):
        outputs.append(forward(trim_padding(inputs[batch])))
        rows.append(batch)
    stacked = torch.cat(outputs)
    result = torch.empty_like(stacked)
    result[torch.cat(rows)] = stacked
    return result


@dataclass(eq=False)
class TaskFit:
    """A fitted task: the network to predict with, and how it was chosen."""

    method: str
    task_name: str
    network: TaskNetwork
    hyperparameters: Hyperparameters
    trainable_parameters: int
    #: trainable parameters outside the head (patches + task norms, or the whole encoder)
    encoder_parameters: int
    #: wall time of tuning + refit
    seconds: float
    #: per grid point: its settings, chosen epoch and validation score
    tuning: list[dict[str, Any]]
    #: profile: class names (head output order); P3: candidate item keys
    outputs: np.ndarray
    #: P3 only: the split whose candidates the head scores
    split: CrossDomainSplit | None = None
    #: profile only: (C,) label frequencies of the users it was fitted on, in head output order;
    #: the one source of the prior-adjusted decision and of the bundle's ``class_prior``
    class_prior: np.ndarray | None = None

    @property
    def logit_shift(self) -> np.ndarray | None:
        """Profile only: (C,) what the prior-adjusted decision adds to the logits."""
        if self.class_prior is None:
            return None
        return decision.prior_shift(self.class_prior, self.hyperparameters.class_weight)

    def summary(self) -> dict[str, Any]:
        """JSON-ready description (for reports)."""
        return {
            "method": self.method,
            "hyperparameters": dataclasses.asdict(self.hyperparameters),
            "trainable_parameters": self.trainable_parameters,
            "encoder_parameters": self.encoder_parameters,
            "seconds": round(self.seconds, 2),
            "tuning": self.tuning,
        }


@dataclass
class TrainResult:
    """Outcome of one training run; the trained parameters hold the best (or last) epoch."""

    epochs_run: int
    best_epoch: int
    best_score: float | None
    history: list[dict[str, float]]
    seconds: float


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
    (N, L) training inputs at the start of every epoch (data augmentation).
    """
    started = time.perf_counter()
    params = [p for group in groups for p in group["params"]]
    optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
    generator = torch.Generator().manual_seed(seed)
    lengths = sequence_lengths(inputs) if sequences else torch.zeros(inputs.shape[0])
    best_score, best_epoch, bad = -math.inf, 0, 0
    best_state: list[torch.Tensor] | None = None
    history: list[dict[str, float]] = []

    def checkpoint(epoch: int, record: dict[str, float]) -> bool:
        """Validate after ``epoch`` (0 = untrained); True when patience has run out."""
        nonlocal best_score, best_epoch, bad, best_state
        score = float(validate())  # type: ignore[misc]
        record["valid"] = score
        if score > best_score:
            best_score, best_epoch, bad = score, epoch, 0
            best_state = [p.detach().clone() for p in params]
        else:
            bad += 1
        return bad >= settings.patience

    module.eval()
    if validate is not None and validate_untrained:
        # epoch 0: P3's untrained head is the popularity ranking, which may already win
        history.append({"epoch": 0})
        checkpoint(0, history[-1])
    epoch = 0
    for epoch in range(1, epochs + 1):
        if resample is not None:
            inputs = resample(generator)
            lengths = sequence_lengths(inputs)
        module.train()
        total, count = 0.0, 0
        for rows in length_batches(lengths, settings.batch_size, generator):
            batch = trim_padding(inputs[rows]) if sequences else inputs[rows]
            loss = loss_fn(forward(batch), rows)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.grad_clip > 0:
                nn.utils.clip_grad_norm_(params, settings.grad_clip)
            optimizer.step()
            total += float(loss.detach()) * rows.numel()
            count += rows.numel()
        module.eval()
        record = {"epoch": epoch, "loss": total / max(count, 1)}
        history.append(record)
        if validate is not None and checkpoint(epoch, record):
            break
    module.eval()
    if best_state is not None:
        with torch.no_grad():
            for param, value in zip(params, best_state, strict=True):
                param.copy_(value)
    return TrainResult(
        epochs_run=epoch,
        best_epoch=best_epoch if validate is not None else epoch,
        best_score=best_score if validate is not None else None,
        history=history,
        seconds=time.perf_counter() - started,
    )


# --------------------------------------------------------------------------------------------
# Fitting a task: grid on validation users, then refit
# --------------------------------------------------------------------------------------------

#: validate(user_vectors, head, hyperparameters) -> validation score (higher is better); the
#: hyperparameters matter where they change the decision rule (P2's class weighting)
Validator = Callable[[Callable[[torch.Tensor], torch.Tensor], nn.Module, Hyperparameters], float]
#: init_head(head, frozen user vectors (N, D), hyperparameters): sets a fresh head in place
HeadInit = Callable[[nn.Module, torch.Tensor, Hyperparameters], None]


@dataclass(eq=False)
class TaskProblem:
    """One task's training data as a method sees it: inputs, head, loss and validation."""

    #: (N, L) left-padded training sequences
    inputs: torch.Tensor
    #: make_head(from_pretrained) -> a fresh head (P3 may start from the pretrained item vectors)
    make_head: Callable[[bool], nn.Module]
    #: loss_fn(outputs of a batch, its row indices, hyperparameters) -> scalar
    loss_fn: Callable[[torch.Tensor, torch.Tensor, Hyperparameters], torch.Tensor]
    #: None when refitting for a fixed number of epochs
    validate: Validator | None = None
    #: (V,) source-domain filter applied before the encoder (P3)
    keep: torch.Tensor | None = None
    #: let the untrained model (epoch 0) compete in early stopping
    validate_untrained: bool = False
    #: resample(generator) -> fresh (N, L) training inputs for an epoch (augmentation)
    resample: Callable[[torch.Generator], torch.Tensor] | None = None
    #: a pretrained method's head before training (LP-FT), on the frozen vectors of ``inputs``;
    #: scratch never gets it
    init_head: HeadInit | None = None


def fit_once(init_head: HeadInit, reads: Callable[[Hyperparameters], Hashable]) -> HeadInit:
    """``init_head`` fitted once per distinct (frozen vectors, hyperparameters it ``reads``).

    Every grid point of a frozen or fine-tuned method starts from the same pretrained vectors,
    and a probe reads few of the hyperparameters (P2: the class weighting; P3: none), so the
    tuning grid would otherwise refit an identical probe per point. The vectors are keyed by
    their bytes, not trusted to be equal: a head is only reused for exactly the same input.
    Fresh heads are built under the same seed, so restoring the fitted state is the same head.
    """
    fitted: dict[tuple[Hashable, str], dict[str, torch.Tensor]] = {}

    def init(head: nn.Module, vectors: torch.Tensor, hp: Hyperparameters) -> None:
        digest = hashlib.blake2b(vectors.detach().contiguous().numpy().tobytes(),
                                 digest_size=16).hexdigest()
        key = (reads(hp), f"{tuple(vectors.shape)}:{digest}")
        state = fitted.get(key)
        if state is None:
            init_head(head, vectors, hp)
            fitted[key] = {name: t.detach().clone() for name, t in head.state_dict().items()}
        else:
            head.load_state_dict(state)

    return init


def _memoised(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """Cache ``fn`` per input tensor: a frozen backbone's user vectors never change."""
    cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def wrapped(items: torch.Tensor) -> torch.Tensor:
        hit = cache.get(id(items))
        if hit is None or hit[0] is not items:
            hit = (items, fn(items))
            cache[id(items)] = hit
        return hit[1]

    return wrapped


def run_method(
    method: str,
    pretrained: Pretrained,
    problem: TaskProblem,
    hp: Hyperparameters,
    settings: AdaptSettings,
    task_name: str,
    seed: int,
    epochs: int,
    shared: bool = False,
) -> tuple[MethodSetup, TrainResult]:
    """Build ``method`` and train it on ``problem`` (early stopping when it has a validator)."""
    torch.manual_seed(seed)
    head = problem.make_head(method != "scratch")
    setup = build_method(method, pretrained.encoder, head, hp, settings, task_name, problem.keep,
                         seed, shared)
    network = setup.network
    network.eval()
    if setup.on_features:
        vectors = _memoised(lambda items: batched_forward(network.user_vector, items))
        inputs, forward = vectors(problem.inputs), head  # (N, D)
    else:
        vectors = lambda items: batched_forward(network.user_vector, items)  # noqa: E731
        inputs, forward = problem.inputs, network
    if problem.init_head is not None and method != "scratch":
        # fresh patches are the identity, so these are the pretrained backbone's vectors
        problem.init_head(head, vectors(problem.inputs), hp)
    validate = None
    if problem.validate is not None:
        check = problem.validate
        validate = lambda: check(vectors, head, hp)  # noqa: E731
    result = train_loop(
        forward, network, setup.param_groups(hp, settings.head_lr_scale), inputs,
        lambda out, rows: problem.loss_fn(out, rows, hp), hp, settings, seed, epochs, validate,
        sequences=not setup.on_features, validate_untrained=problem.validate_untrained,
        resample=None if setup.on_features else problem.resample,
    )
    return setup, result


def fit_task(
    method: str,
    pretrained: Pretrained,
    tune: TaskProblem,
    refit: TaskProblem,
    settings: AdaptSettings,
    task_name: str,
    seed: int = 0,
    profile: bool = True,
    shared: bool = False,
    always_refit: bool = False,
) -> tuple[MethodSetup, Hyperparameters, list[dict[str, Any]], float]:
    """Grid search with early stopping on ``tune``; refit the winner on ``refit``.

    Returns (setup, chosen hyperparameters with their epoch count, per-point tuning record,
    seconds). Without ``settings.refit`` the early-stopped winner is kept, except when
    ``shared`` (the exported model is trained on every training user) or ``always_refit``.
    """
    started = time.perf_counter()
    tuning: list[dict[str, Any]] = []
    best: tuple[float, int, Hyperparameters, MethodSetup] | None = None
    for hp in hyperparameter_grid(method, settings, profile):
        setup, result = run_method(method, pretrained, tune, hp, settings, task_name, seed,
                                   settings.max_epochs)
        score = -math.inf if result.best_score is None else result.best_score
        tuning.append({**dataclasses.asdict(hp), "epoch": result.best_epoch,
                       "valid": round(score, 5), "seconds": round(result.seconds, 2)})
        logger.debug("%s %s %s: epoch %d valid %.4f (%.1fs)", task_name, method, hp,
                     result.best_epoch, score, result.seconds)
        if best is None or score > best[0]:
            best = (score, result.best_epoch, hp, setup)
    assert best is not None
    _, epoch, hp, setup = best
    chosen = dataclasses.replace(hp, epochs=epoch)
    if settings.refit or shared or always_refit:
        setup, _ = run_method(method, pretrained, refit, chosen, settings, task_name, seed, epoch,
                              shared=shared)
    return setup, chosen, tuning, time.perf_counter() - started


def make_task_fit(
    method: str, setup: MethodSetup, hp: Hyperparameters, tuning: list[dict[str, Any]],
    seconds: float, outputs: np.ndarray, task_name: str, split: CrossDomainSplit | None = None,
) -> TaskFit:
    """The :class:`TaskFit` of a fitted setup, with its trainable counts split head / encoder."""
    head_ids = {id(p) for p in setup.network.head.parameters()}
    encoder_params = [p for p in setup.params if id(p) not in head_ids]
    return TaskFit(
        method=method,
        task_name=task_name,
        network=setup.network,
        hyperparameters=hp,
        trainable_parameters=count_parameters(setup.params),
        encoder_parameters=count_parameters(encoder_params),
        seconds=seconds,
        tuning=tuning,
        outputs=outputs,
        split=split,
    )


def column_scale(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and std (+1e-6, so constant columns map to 0) of the fitted rows.

    Every probe standardises the frozen vectors with these before its penalised fit, so the
    penalty treats all coordinates alike, and folds them back into the weights afterwards.
    """
    return vectors.mean(axis=0), vectors.std(axis=0) + 1e-6


# --------------------------------------------------------------------------------------------
# The exported task: final.pt
# --------------------------------------------------------------------------------------------


def final_payload(fit: TaskFit, pretrained: Pretrained, extra: dict[str, Any]) -> dict[str, Any]:
    """What the export engineer needs to rebuild a task on the backbone (weights_only-loadable).

    ``patch_state`` are encoder state-dict entries (load with ``strict=False`` after
    ``encoder.add_task(task, **spec)``); ``head_state`` is the head's state dict.
    """
    network = fit.network
    spec = network.encoder.tasks.get(network.patches) if network.patches else None
    payload: dict[str, Any] = {
        "task": fit.task_name,
        "method": fit.method,
        "spec": None if spec is None else dataclasses.asdict(spec),
        "patch_state": (
            {} if network.patches is None else task_state_dict(network.encoder, network.patches)
        ),
        "head_state": {k: v.detach().clone() for k, v in network.head.state_dict().items()},
        "readout": network.readout,
        "hyperparameters": dataclasses.asdict(fit.hyperparameters),
        "trainable_parameters": fit.trainable_parameters,
        "encoder_checkpoint": pretrained.checkpoint,
        "encoder_fingerprint": pretrained.meta.get("dataset_fingerprint", ""),
        "code_version": code_version(),
    }
    if network.keep is not None:
        payload["source_keep"] = network.keep.clone()
    return {**payload, **extra}
