"""``[adapt]``: how the tasks are trained on the pretrained encoder (every key optional).

Torch-free, so that a config loads and is checked (and its docs are generated) without the
training stack. The task code reads these settings; :mod:`uservec.training.task_selection`
turns the ``*_grid`` fields into the hyperparameter grid tuned on validation users.
"""

from __future__ import annotations

from dataclasses import dataclass

from uservec.training.choices import (
    METHODS,
    FrozenMethod,
    HeadInit,
    Method,
    Placement,
    Readout,
    SelectMetric,
    TaskItemInit,
)
from uservec.training.config_schema import (
    FRACTION,
    NON_NEGATIVE,
    OPEN_FRACTION,
    POSITIVE,
    PROBABILITY,
    Section,
    setting,
)


@dataclass(frozen=True)
class AdaptSettings(Section):
    """Task training: methods, the tuning grids, the training loop and the exported model.

    Fields ending in ``_grid`` are tuned on validation users inside the training data; the rest
    are fixed. Learning rates are per method because a frozen backbone tolerates (and a linear
    head on fixed features needs) larger steps than a fully fine-tuned one.
    """

    #: methods compared on every task (each beside the task's baselines)
    methods: tuple[Method, ...] = METHODS
    #: adapter: bottleneck width of each patch
    bottleneck_grid: tuple[int, ...] = setting((8,), POSITIVE, non_empty=True)
    #: adapter: "serial" (patch after the convolution) or "parallel" (beside it)
    placement: Placement = "serial"
    #: adapter: placements tuned on validation users like the learning rate (empty = only
    #: ``placement``); PeterRec reports both, and which one suits a task is an empirical question
    placement_grid: tuple[Placement, ...] = ()
    #: adapter: train a copy of every layer norm per task (PeterRec) instead of sharing them
    own_layer_norms: bool = True
    #: adapter: ranks of the task's item patch (a low-rank correction of the frozen item
    #: embeddings, training.model.ItemPatch) tuned on validation users; 0 = no item patch
    item_rank_grid: tuple[int, ...] = setting((0,), NON_NEGATIVE, non_empty=True)
    #: adapter: learning rates tuned on validation users
    adapter_lr_grid: tuple[float, ...] = setting((1e-3,), POSITIVE, non_empty=True)
    #: head-only: learning rates tuned on validation users
    head_only_lr_grid: tuple[float, ...] = setting((1e-2,), POSITIVE, non_empty=True)
    #: fine-tune-all: learning rates tuned on validation users
    fine_tune_lr_grid: tuple[float, ...] = setting((3e-4,), POSITIVE, non_empty=True)
    #: scratch: learning rates tuned on validation users
    scratch_lr_grid: tuple[float, ...] = setting((1e-3,), POSITIVE, non_empty=True)
    #: AdamW decoupled weight decay
    weight_decay_grid: tuple[float, ...] = setting((0.0,), NON_NEGATIVE, non_empty=True)
    #: profile: class weights (n / (C * n_c)) ** power: 0 = unweighted, 1 = "balanced"
    class_weight_grid: tuple[float, ...] = setting((1.0,), NON_NEGATIVE, non_empty=True)
    #: profile: validation metric for early stopping, the grid and the probe's C, each read
    #: under the decision rule the report scores it with
    select_metric: SelectMetric = "mean"
    #: profile: share of the labelled training rows held out for validation
    valid_fraction: float = setting(0.15, OPEN_FRACTION)
    #: profile augmentation: share of training users whose window ends, each epoch, at a random
    #: event of the newer half of their history instead of at their newest event
    crop_probability: float = setting(0.0, PROBABILITY)
    #: profile augmentation: share of each training user's events dropped, anew every epoch
    event_dropout: float = setting(0.0, FRACTION)
    #: most epochs per fit
    max_epochs: int = setting(20, POSITIVE)
    #: epochs without validation improvement before stopping
    patience: int = setting(4, POSITIVE)
    #: users per training batch
    batch_size: int = setting(64, POSITIVE)
    #: gradient norm clip (0 = none)
    grad_clip: float = setting(1.0, NON_NEGATIVE)
    #: the head's learning rate = this x the method's (not for head-only, where it is all head)
    head_lr_scale: float = setting(1.0, POSITIVE)
    #: dropout before a profile head's linear layer
    head_dropout: float = setting(0.1, FRACTION)
    #: refit the chosen setting on all training users for the chosen epochs (else keep the
    #: early-stopped model trained without the validation users)
    refit: bool = False
    #: P3 target-item table at the start: "popularity" (zero vectors, bias log(1 + training
    #: users per item): the untrained head *is* the popularity ranking), "pretrained" (the
    #: pretrained next-item output layer) or "probe" (ridge from the frozen user vectors to the
    #: target bags, lambda on an inner holdout). Scratch always starts from popularity
    item_init: TaskItemInit = "popularity"
    #: profile: the pretrained methods' head at the start: "random", or "probe" (a class-weighted
    #: logistic regression on the frozen backbone's user vectors, C by inner CV; linear probing
    #: then fine-tuning, LP-FT): training starts from the probe, which competes as epoch 0
    head_init: HeadInit = "random"
    #: method of the one final model saved per task for export
    final_method: FrozenMethod = "adapter"
    #: user vector the task head reads: "last" (state after the newest event) or "mean" (average
    #: over the window's events, see training.model.read_out; best with pretrain.item_init = svd)
    readout: Readout = "last"

    SECTION = "adapt"

    def lr_grid(self, method: Method) -> tuple[float, ...]:
        """The learning rates tuned for ``method``."""
        return {
            "adapter": self.adapter_lr_grid,
            "head-only": self.head_only_lr_grid,
            "fine-tune-all": self.fine_tune_lr_grid,
            "scratch": self.scratch_lr_grid,
        }[method]


@dataclass(frozen=True)
class Hyperparameters:
    """One point of the tuning grid; ``epochs`` is filled in once validation has chosen it."""

    lr: float
    weight_decay: float = 0.0
    #: adapter only
    bottleneck: int | None = None
    #: adapter only
    placement: Placement | None = None
    #: adapter only: rank of the item patch (0 = none)
    item_rank: int = 0
    #: profile only: class-weight power (0 = unweighted, 1 = balanced)
    class_weight: float = 0.0
    epochs: int | None = None
