"""What a comparison needs of a task fit: its report summary, and the saved final model."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path

from uservec.training.baselines.pooled import PooledRows
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.fit_summary import FinalModel, FitSummary
from uservec.training.task_artifact import TaskOutputs, task_artifact
from uservec.training.task_network import Pretrained
from uservec.training.task_selection import TaskFit
from uservec.training.task_settings import AdaptSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class TaskContext:
    """What every method of every task is trained with: data, backbones and settings."""

    dataset: PreparedDataset
    #: an untouched copy of the pretrained encoder: evaluation fits start from it
    pristine: Pretrained
    #: the shared backbone the final models are added to (and exported from)
    shared: Pretrained
    settings: AdaptSettings
    max_len: int
    seed: int
    k: int
    #: per profile task: a corpus' labelled users for the pooled baselines (pretrain.corpus)
    pooled: dict[str, PooledRows] = field(default_factory=dict)


def summarise_fit(fit: TaskFit) -> FitSummary:
    """The report's view of a fit (method, hyperparameters, size, time, tuning record)."""
    return FitSummary(
        method=fit.method,
        hyperparameters=dataclasses.asdict(fit.hyperparameters),
        trainable_parameters=fit.trainable_parameters,
        encoder_parameters=fit.encoder_parameters,
        seconds=round(fit.seconds, 2),
        tuning=fit.tuning,
    )


def save_final(fit: TaskFit, context: TaskContext, task_dir: Path, outputs: TaskOutputs,
               trained_on_users: int) -> FinalModel:
    """Write ``task_dir/final.pt``, the task's :class:`~training.task_artifact.TaskArtifact`."""
    path = task_artifact(fit, context.shared, outputs, context.max_len).save(
        Path(task_dir) / "final.pt")
    logger.info("saved %s", path)
    return FinalModel(summarise_fit(fit), str(path), trained_on_users)
