"""The typed result of every task of a run, as ``report.json`` stores it (``tasks``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from uservec.training.evaluation.cross_domain_results import CrossDomainTaskResult
from uservec.training.evaluation.profile_results import ProfileTaskResult

TaskResult = ProfileTaskResult | CrossDomainTaskResult


@dataclass(frozen=True)
class TaskResults:
    """What ``run_tasks`` returns: each task's result and the checks made across tasks."""

    #: the task-training settings used (``dataclasses.asdict`` of ``AdaptSettings``)
    settings: dict[str, Any]
    encoder_checkpoint: str
    #: by task name, in config order
    tasks: dict[str, TaskResult]
    #: True when adding each task left the outputs of every earlier task unchanged
    no_forgetting: bool
    seconds: float

    def to_json(self) -> dict[str, Any]:
        return {"settings": self.settings, "encoder_checkpoint": self.encoder_checkpoint,
                "tasks": {name: task.to_json() for name, task in self.tasks.items()},
                "no_forgetting": self.no_forgetting, "seconds": self.seconds}
