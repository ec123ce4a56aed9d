"""P2 profile tasks on a pretrained encoder: one classification head per profile attribute.

:func:`fit_profile_task` puts a :class:`~training.model.ClassificationHead` on the user vector
(the ``readout`` of the latest ``max_len`` events) and trains it with class-weighted
cross-entropy through :func:`training.adapt.fit_task`: tuned on a stratified holdout of the
training users, then kept or refitted on all of them. With ``head_init = "probe"`` the head of a
pretrained method starts from a logistic regression on the frozen vectors (:func:`probe_head`)::

    pretrained = load_pretrained("runs/ml100k/pretrain/best.pt")
    fit = fit_profile_task("adapter", pretrained, dataset, users, labels, classes, settings, 100)
    predicted = predict_profile(fit, dataset, test_users, 100)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uservec.contract import decision
from uservec.contract.decision import Decision
from uservec.contract.sequences import encode_batch
from uservec.training.baselines.logistic import fit_lr, select_c
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.profile_eval import METRIC_DECISION
from uservec.training.evaluation.profile_split import Fold, holdout_split
from uservec.training.linear_probes import column_scale
from uservec.training.model import ClassificationHead
from uservec.training.task_loop import batched_forward
from uservec.training.task_network import Pretrained, count_parameters
from uservec.training.task_selection import (
    HeadInit,
    TaskFit,
    TaskProblem,
    fit_once,
    fit_task,
    make_task_fit,
)
from uservec.training.task_settings import AdaptSettings, Hyperparameters

logger = logging.getLogger(__name__)

def profile_inputs(dataset: PreparedDataset, users: np.ndarray, max_len: int) -> torch.Tensor:
    """(N, max_len) the users' whole sequences, latest ``max_len`` events, left-padded."""
    return torch.from_numpy(encode_batch([dataset.sequence(int(u)) for u in users], max_len))


def augment_windows(
    sequences: Sequence[np.ndarray], max_len: int, crop_probability: float,
    event_dropout: float, generator: torch.Generator,
) -> torch.Tensor:
    """(N, max_len) randomly perturbed training windows (the label is the user's either way).

    With ``crop_probability`` a user's window ends at a random event of the newer half of their
    history; then each event is dropped with probability ``event_dropout`` (at least one is
    kept). Without this, a sequence model memorises a few hundred users by their exact
    histories in a handful of epochs instead of learning what the label depends on.
    """
    windows = []
    for sequence in sequences:
        end = len(sequence)
        if end > 1 and float(torch.rand(1, generator=generator)) < crop_probability:
            first = (end + 1) // 2
            end = first + int(torch.randint(0, end - first + 1, (1,), generator=generator))
        window = sequence[:end]
        if event_dropout > 0 and window.size > 1:
            kept = torch.rand(window.size, generator=generator).numpy() >= event_dropout
            kept[-1] |= not kept.any()
            window = window[kept]
        windows.append(window[-max_len:])
    return torch.from_numpy(encode_batch(windows, max_len))


def class_weights(codes: np.ndarray, n_classes: int, power: float) -> torch.Tensor:
    """(C,) (n / (C_present * n_c)) ** power; classes absent from ``codes`` get weight 0."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = (codes.size / (present.sum() * counts[present])) ** power
    return torch.tensor(weights, dtype=torch.float32)


def prior_shift(codes: np.ndarray, n_classes: int, power: float) -> np.ndarray:
    """(C,) what undoes :func:`class_weights` at decision time (:mod:`uservec.decision`).

    Cross-entropy weighted by ``prior_c ** -power`` makes the head estimate a posterior tilted
    toward rare classes; adding ``power * log(class frequency)`` to its logits tilts it back, so
    the argmax becomes the ordinary posterior's. Classes absent from ``codes`` get ``-inf``.
    """
    return decision.prior_shift(class_frequencies(codes, n_classes), power)


def class_frequencies(codes: np.ndarray, n_classes: int) -> np.ndarray:
    """(C,) the share of ``codes`` in each class (0 for a class without examples)."""
    counts = np.bincount(codes, minlength=n_classes).astype(np.float64)
    return counts / counts.sum()


def rule_predictions(logits: np.ndarray, shift: np.ndarray) -> dict[Decision, np.ndarray]:
    """(N,) column indices of ``logits`` (N, C) per decision rule (:mod:`uservec.decision`).

    ``shift`` (C,) is the fit's :func:`prior_shift`: ``as_trained`` ignores it,
    ``prior_adjusted`` adds it before the argmax.
    """
    return {"as_trained": logits.argmax(1), "prior_adjusted": (logits + shift).argmax(1)}


def profile_score(
    truth: np.ndarray, predicted: np.ndarray | Mapping[Decision, np.ndarray], n_classes: int,
    metric: str,
) -> float:
    """The validation criterion: accuracy, macro-F1 over all classes, or their mean.

    Given one prediction per decision rule, each metric reads the rule the test report scores
    it with (:data:`METRIC_DECISION`): validation then selects the epoch,
    the grid point and the probe's C on what the report measures. Scoring the accuracy half on
    the as-trained argmax, a class-weighted head is judged by a rule it is never tested with.
    """
    if not isinstance(predicted, Mapping):
        predicted = dict.fromkeys(decision.DECISIONS, predicted)
    acc = accuracy(truth, predicted[METRIC_DECISION["accuracy"]])
    f1 = macro_f1(truth, predicted[METRIC_DECISION["macro_f1"]], np.arange(n_classes))
    return {"accuracy": acc, "macro_f1": f1, "mean": (acc + f1) / 2}[metric]


@dataclass(frozen=True, eq=False)
class ResidualLogits:
    """Fixed logits (a fitted wide part's) that a residual head is trained on top of.

    ``tune`` and ``refit`` are out-of-fold logits of the holdout's training rows and of every
    row; ``valid`` are the holdout's validation rows' logits from a fit on the training rows.
    """

    tune: np.ndarray
    valid: np.ndarray
    refit: np.ndarray


def _zero_head(head: nn.Module, _vectors: torch.Tensor, _hp: Hyperparameters) -> None:
    """A residual head starts at zero: the untrained model is the wide part alone."""
    with torch.no_grad():
        for parameter in head.parameters():
            parameter.zero_()


def profile_problem(
    inputs: torch.Tensor,
    codes: np.ndarray,
    n_classes: int,
    settings: AdaptSettings,
    dim: int,
    valid_inputs: torch.Tensor | None = None,
    valid_codes: np.ndarray | None = None,
    sequences: Sequence[np.ndarray] | None = None,
    offset: np.ndarray | None = None,
    valid_offset: np.ndarray | None = None,
) -> TaskProblem:
    """Class-weighted cross-entropy on ``codes`` (class indices); validation on the holdout.

    With ``sequences`` (the users' whole histories) the training windows are perturbed anew
    every epoch as ``settings.crop_probability`` and ``settings.event_dropout`` say. With
    ``offset`` (N, C) the head is a residual: the loss and the validation read its logits plus
    these fixed ones (``valid_offset`` for the validation rows), and it starts at zero.
    """
    targets = torch.from_numpy(codes.astype(np.int64))
    weights: dict[float, torch.Tensor] = {}
    fixed = None if offset is None else torch.from_numpy(offset.astype(np.float32))

    def loss_fn(logits: torch.Tensor, rows: torch.Tensor, hp: Hyperparameters) -> torch.Tensor:
        if hp.class_weight not in weights:
            weights[hp.class_weight] = class_weights(codes, n_classes, hp.class_weight)
        if fixed is not None:
            logits = logits + fixed[rows]
        return F.cross_entropy(logits, targets[rows], weight=weights[hp.class_weight])

    def make_head(_: bool) -> nn.Module:
        return ClassificationHead(dim, n_classes, settings.head_dropout)

    validate = None
    if valid_inputs is not None and valid_codes is not None:
        valid_x, valid_y = valid_inputs, valid_codes

        valid_fixed = 0.0 if valid_offset is None else valid_offset

        def validate(vectors: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                     hp: Hyperparameters) -> float:
            with torch.no_grad():
                logits = head(vectors(valid_x)).numpy() + valid_fixed
            shift = prior_shift(codes, n_classes, hp.class_weight)  # undoes the loss weights
            return profile_score(valid_y, rule_predictions(logits, shift), n_classes,
                                 settings.select_metric)

    resample = None
    if sequences is not None and (settings.crop_probability > 0 or settings.event_dropout > 0):
        histories, max_len = list(sequences), inputs.shape[1]

        def resample(generator: torch.Generator) -> torch.Tensor:
            return augment_windows(histories, max_len, settings.crop_probability,
                                   settings.event_dropout, generator)

    init_head: HeadInit | None = None
    if fixed is not None:
        init_head = _zero_head
    elif settings.head_init == "probe":

        def probe(head: nn.Module, vectors: torch.Tensor, hp: Hyperparameters) -> None:
            probe_head(head, vectors.numpy(), codes, n_classes, hp.class_weight,
                       settings.select_metric)

        init_head = fit_once(probe, reads=lambda hp: hp.class_weight)

    return TaskProblem(inputs, make_head, loss_fn, validate, resample=resample,
                       init_head=init_head, validate_untrained=init_head is not None)



def probe_head(
    head: nn.Module, vectors: np.ndarray, codes: np.ndarray, n_classes: int, power: float,
    metric: str,
) -> float:
    """Set ``head.linear`` to a logistic regression on ``vectors`` (N, D); returns the chosen C.

    Linear probing before fine-tuning (LP-FT): a randomly initialised head makes the first
    epochs of adapter training chase a random decision boundary through the patches, which on a
    few hundred labelled users distorts the pretrained features more than it adapts them. The
    probe is fitted on standardised vectors with class weights ``(n / (C n_c)) ** power`` and C
    chosen by inner 3-fold CV on ``metric``; the standardisation is folded into the weights, so
    the head stays one linear layer on the raw user vector (nothing changes for export).
    """
    linear: nn.Linear = head.linear  # type: ignore[assignment]
    present = np.unique(codes)
    if present.size < 2:
        with torch.no_grad():
            linear.weight.zero_()
            linear.bias.fill_(-10.0)
            linear.bias[int(present[0])] = 0.0
        return math.nan
    mean, std = column_scale(vectors)
    x = (vectors - mean) / std
    weights = class_weights(codes, n_classes, power).numpy()
    class_weight = {int(c): float(weights[c]) for c in present}
    shift = prior_shift(codes, n_classes, power)

    def predict(train: np.ndarray, labels: np.ndarray, test: np.ndarray,
                c: float) -> dict[Decision, np.ndarray]:
        if np.unique(labels).size < 2:
            return {rule: np.full(test.shape[0], labels[0]) for rule in decision.DECISIONS}
        model = fit_lr(train, labels, c, class_weight)
        fitted = model.classes_.astype(np.int64)
        return {rule: fitted[column] for rule, column in
                rule_predictions(model.predict_log_proba(test), shift[fitted]).items()}

    # select_c decides too when there are too few rows to cross-validate (as for the baselines)
    c, _ = select_c(x, codes, np.arange(n_classes), balanced=False, predict=predict,
                    score=lambda truth, predicted: profile_score(truth, predicted, n_classes,
                                                                 metric))
    model = fit_lr(x, codes, c, class_weight)
    coef, intercept = model.coef_, model.intercept_
    if coef.shape[0] == 1:  # binary: sklearn keeps one row, the logit of classes_[1]
        coef, intercept = np.vstack([-coef / 2, coef / 2]), np.array([-1, 1]) * intercept / 2
    weight = np.zeros((n_classes, vectors.shape[1]))
    bias = np.full(n_classes, float(intercept.min()) - 10.0)  # absent classes: never predicted
    rows = model.classes_.astype(np.int64)
    weight[rows] = coef / std
    bias[rows] = intercept - (coef / std) @ mean
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(weight))
        linear.bias.copy_(torch.from_numpy(bias))
    return c


def fit_profile_task(
    method: str,
    pretrained: Pretrained,
    dataset: PreparedDataset,
    users: np.ndarray,
    labels: np.ndarray,
    classes: np.ndarray,
    settings: AdaptSettings,
    max_len: int,
    seed: int = 0,
    task_name: str = "task",
    shared: bool = False,
    residual: Callable[[Fold], ResidualLogits] | None = None,
) -> TaskFit:
    """Tune on a stratified holdout of ``users``, refit on all of them (module docstring).

    ``labels`` are class names, ``classes`` every class in head output order. With ``shared`` a
    frozen method's refit is added to ``pretrained.encoder`` itself as task ``task_name``. With
    ``residual`` (holdout -> the wide part's logits) the head learns on top of those logits.
    """
    classes = np.asarray(classes).astype(str)
    position = {name: pos for pos, name in enumerate(classes)}
    codes = np.array([position[str(label)] for label in labels], dtype=np.int64)
    users = np.asarray(users, dtype=np.int64)
    histories = [dataset.sequence(int(u)) for u in users]
    inputs = profile_inputs(dataset, users, max_len)
    holdout = holdout_split(codes, settings.valid_fraction, small=True)
    dim = pretrained.encoder.dim
    fixed = None if residual is None else residual(holdout)
    tune = profile_problem(inputs[holdout.train], codes[holdout.train], classes.size, settings,
                           dim, inputs[holdout.test], codes[holdout.test],
                           [histories[i] for i in holdout.train],
                           offset=None if fixed is None else fixed.tune,
                           valid_offset=None if fixed is None else fixed.valid)
    refit = profile_problem(inputs, codes, classes.size, settings, dim, sequences=histories,
                            offset=None if fixed is None else fixed.refit)
    setup, hp, tuning, seconds = fit_task(method, pretrained, tune, refit, settings, task_name,
                                          seed, profile=True, shared=shared)
    logger.info("P2 %s %s: %s, %d trainable, %.1fs", task_name, method, hp,
                count_parameters(setup.params), seconds)
    fit = make_task_fit(method, setup, hp, tuning, seconds, classes, task_name)
    fit.class_prior = class_frequencies(codes, classes.size)
    return fit


def profile_logits(fit: TaskFit, dataset: PreparedDataset, users: np.ndarray,
                   max_len: int) -> np.ndarray:
    """(N, C) class logits of a fitted profile task."""
    fit.network.eval()
    inputs = profile_inputs(dataset, np.asarray(users, dtype=np.int64), max_len)
    return batched_forward(fit.network, inputs).numpy()


def predict_profile(fit: TaskFit, dataset: PreparedDataset, users: np.ndarray,
                    max_len: int) -> np.ndarray:
    """(N,) predicted class names: the head's argmax as trained (what the service answers)."""
    return fit.outputs[profile_logits(fit, dataset, users, max_len).argmax(1)]


def predict_profile_rules(fit: TaskFit, dataset: PreparedDataset, users: np.ndarray,
                          max_len: int) -> dict[str, np.ndarray]:
    """(N,) predicted class names per decision rule of :data:`METRIC_DECISION`.

    ``as_trained`` is the head's argmax; ``prior_adjusted`` adds the fit's
    :func:`prior_shift` first (the same logits, one forward pass).
    """
    logits = profile_logits(fit, dataset, users, max_len)
    shift = np.zeros(logits.shape[1]) if fit.logit_shift is None else fit.logit_shift
    return {rule: fit.outputs[column] for rule, column in rule_predictions(logits, shift).items()}
