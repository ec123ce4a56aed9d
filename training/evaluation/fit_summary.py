"""What a report says about a fitted task network: its choice, its size and its cost."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FitSummary:
    """One task fit as the report shows it: parameters and time beside metrics
    (docs/protocols.md#methods-compared)."""

    method: str
    #: the chosen grid point (``dataclasses.asdict`` of the fit's hyperparameters)
    hyperparameters: dict[str, Any]
    trainable_parameters: int
    #: trainable parameters outside the head (patches + task norms, or the whole encoder)
    encoder_parameters: int
    #: wall time of tuning + refit, rounded to 10 ms
    seconds: float
    #: per grid point: its settings, chosen epoch and validation score
    tuning: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "hyperparameters": self.hyperparameters,
                "trainable_parameters": self.trainable_parameters,
                "encoder_parameters": self.encoder_parameters, "seconds": self.seconds,
                "tuning": self.tuning}


@dataclass(frozen=True)
class FinalModel:
    """The one model per task that is saved for export."""

    fit: FitSummary
    #: where its ``final.pt`` was written
    path: str
    trained_on_users: int

    def to_json(self) -> dict[str, Any]:
        return {**self.fit.to_json(), "path": self.path,
                "trained_on_users": self.trained_on_users}
