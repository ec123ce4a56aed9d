"""Fitting a task: the hyperparameter grid, early stopping on validation users, then the refit.

Hyperparameters (learning rate, weight decay, bottleneck, placement, item-patch rank, class
weighting) and the number of epochs are chosen on validation users *inside* the training data
(a stratified holdout of the training fold for P2, the P3 validation round for P3). The
early-stopped winner is used as it is, or, with ``refit`` (always for P3, whose candidates
change, and for the exported model), refitted on every training user for the chosen number of
epochs. A task kind describes its data as a :class:`TaskProblem` (inputs, head, loss,
validation); :func:`fit_task` does the rest::

    setup, hp, tuning, seconds = fit_task("adapter", pretrained, tune, refit, settings, "gender")
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging
import math
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from uservec.contract import decision
from uservec.training.choices import METHODS, Placement
from uservec.training.device import to_active, to_cpu
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.task_loop import TrainResult, batched_forward, train_loop
from uservec.training.task_network import (
    MethodSetup,
    Pretrained,
    TaskNetwork,
    build_method,
    count_parameters,
)
from uservec.training.task_settings import AdaptSettings, Hyperparameters

logger = logging.getLogger(__name__)


def hyperparameter_grid(
    method: str, settings: AdaptSettings, profile: bool
) -> list[Hyperparameters]:
    """Every grid point of ``method`` (in a fixed order: ties go to the earlier point)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    adapter = method == "adapter"
    bottlenecks: Sequence[int | None] = settings.bottleneck_grid if adapter else (None,)
    placements: Sequence[Placement | None] = (
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
        check, on_active = problem.validate, OnActiveDevice(head)
        validate = lambda: check(vectors, on_active, hp)  # noqa: E731
    result = train_loop(
        forward, network, setup.param_groups(hp, settings.head_lr_scale), inputs,
        lambda out, rows: problem.loss_fn(out, rows, hp), hp, settings, seed, epochs, validate,
        sequences=not setup.on_features, validate_untrained=problem.validate_untrained,
        resample=None if setup.on_features else problem.resample,
    )
    return setup, result


class OnActiveDevice(nn.Module):
    """``module`` called with CPU tensors while it sits on the training device (CPU: identity).

    Validators score a head on CPU vectors and read numpy; during a fit on a GPU the head is
    there, so inputs go to it and outputs come back.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.inner = [module]  # a list: not a submodule, so never moved or saved with this one

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_cpu(self.inner[0](to_active(x)))


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


