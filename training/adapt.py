"""Task training on a pretrained NextItNet: the public names, from the modules that own them.

Training a task is split by responsibility:

* :mod:`~uservec.training.task_settings`: the ``[adapt]`` settings and one grid point;
* :mod:`~uservec.training.task_network`: the task network and how each method (adapter,
  head-only, fine-tune-all, scratch) wires and freezes it;
* :mod:`~uservec.training.task_loop`: the training loop and its batching;
* :mod:`~uservec.training.task_selection`: the grid, early stopping on validation users, refit;
* :mod:`~uservec.training.task_artifact`: the exported model of a task (``final.pt``);
* :mod:`~uservec.training.profile_task` (P2) and :mod:`~uservec.training.cross_domain_task` (P3):
  each kind's :class:`TaskProblem` (inputs, head, loss, validation).

::

    pretrained = load_pretrained("runs/ml100k/pretrain/best.pt")
    settings = adapt_settings(cfg)
    setup, hp, tuning, seconds = fit_task("adapter", pretrained, tune, refit, settings, "gender")
"""

from __future__ import annotations

from uservec.training.choices import FROZEN_METHODS, METHODS
from uservec.training.config import ExperimentConfig
from uservec.training.linear_probes import column_scale
from uservec.training.task_artifact import TaskArtifact, final_payload, task_artifact
from uservec.training.task_loop import (
    TrainResult,
    batched_forward,
    length_batches,
    sequence_lengths,
    train_loop,
    trim_padding,
)
from uservec.training.task_network import (
    MethodSetup,
    Pretrained,
    TaskNetwork,
    add_or_reset_task,
    backbone_parameters,
    build_method,
    count_parameters,
    load_pretrained,
    task_state_dict,
)
from uservec.training.task_selection import (
    HeadInit,
    TaskFit,
    TaskProblem,
    Validator,
    fit_once,
    fit_task,
    hyperparameter_grid,
    make_task_fit,
    run_method,
)
from uservec.training.task_settings import AdaptSettings, Hyperparameters

__all__ = [
    "FROZEN_METHODS",
    "METHODS",
    "AdaptSettings",
    "HeadInit",
    "Hyperparameters",
    "MethodSetup",
    "Pretrained",
    "TaskArtifact",
    "TaskFit",
    "TaskNetwork",
    "TaskProblem",
    "TrainResult",
    "Validator",
    "adapt_settings",
    "add_or_reset_task",
    "backbone_parameters",
    "batched_forward",
    "build_method",
    "column_scale",
    "count_parameters",
    "final_payload",
    "fit_once",
    "fit_task",
    "hyperparameter_grid",
    "length_batches",
    "load_pretrained",
    "make_task_fit",
    "run_method",
    "sequence_lengths",
    "task_artifact",
    "task_state_dict",
    "train_loop",
    "trim_padding",
]


def adapt_settings(cfg: ExperimentConfig) -> AdaptSettings:
    """The task-training settings of an experiment (its checked ``[adapt]`` section)."""
    return cfg.adapt
