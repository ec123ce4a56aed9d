"""What bulk embedding is asked (columns, options) and what it answers (summary)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from uservec.contract.decision import Decision


class EmbedError(ValueError):
    """The input or an option cannot be embedded; the message names the file, row and problem."""


@dataclass(frozen=True)
class EventColumns:
    """Column names of the event file, as the training ``generic`` format configures them."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    #: None: the column ``domain`` when the file has one, else every event has the default domain
    domain: str | None = None


@dataclass(frozen=True)
class EmbedOptions:
    #: also write every profile head's label and probabilities
    heads: bool = False
    #: profile heads to write (as the service's ``attributes``); empty: all of them
    attributes: tuple[str, ...] = ()
    decision: Decision = "as_trained"
    #: user sequences per onnxruntime run (larger batches gain little and leave the CPU caches)
    batch_size: int = 64
    #: processes running the model
    workers: int = 1
    #: onnxruntime intra-op threads per worker; 0: the usable cores divided among the workers
    threads: int = 0
    #: input rows read at once
    chunk_rows: int = 1_000_000
    #: rows of one spill partition held in memory at most (a larger one is split again)
    partition_rows: int = 1_000_000
    #: where spill files go (they total about the input's size); None: the system temp folder
    tmp_dir: Path | None = None
    verify_checksums: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers", "chunk_rows", "partition_rows"):
            if getattr(self, name) < 1:
                raise EmbedError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise EmbedError(f"threads must be 0 (automatic) or positive, got {self.threads}")


@dataclass(frozen=True)
class EmbedSummary:
    out: Path
    users: int
    events: int
    partitions: int
    workers: int
    spill_seconds: float
    embed_seconds: float
    #: most input rows one step held in memory (a chunk, or a partition being embedded)
    max_rows_held: int

    @property
    def seconds(self) -> float:
        return self.spill_seconds + self.embed_seconds

    @property
    def users_per_s(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "users": self.users, "events": self.events,
                "partitions": self.partitions, "workers": self.workers,
                "spill_seconds": self.spill_seconds, "embed_seconds": self.embed_seconds,
                "seconds": self.seconds, "users_per_s": self.users_per_s,
                "max_rows_held": self.max_rows_held}
