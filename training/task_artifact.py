"""One exported task model (``RUN/tasks/<name>/final.pt``), typed, written and read in one place.

Task training builds a :class:`TaskArtifact` from the final fit (:func:`task_artifact`); export
reads it back (:meth:`TaskArtifact.load`) to add the task's patches and head to the shared
backbone. The file is one ``torch.save`` dict of tensors and plain values (loadable with
``weights_only=True``): ``patch_state`` are encoder state-dict entries (load with
``strict=False`` after ``encoder.add_task(task, **spec)``), ``head_state`` is the head's state
dict, and the kind-specific part says what the head's outputs mean (class labels, or candidate
items with their popularity).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch

from uservec.contract.fingerprint import code_version
from uservec.training.checkpoint import load_checkpoint, save_checkpoint
from uservec.training.choices import METHODS, READOUTS, TASK_KINDS, Method, Readout, TaskKind
from uservec.training.model import TaskSpec
from uservec.training.task_network import Pretrained, task_state_dict
from uservec.training.task_selection import TaskFit
from uservec.training.task_settings import Hyperparameters


class ArtifactError(ValueError):
    """A saved task model lacks a key or holds a value this code cannot read."""


@dataclass(frozen=True)
class ProfileOutputs:
    """A profile head's outputs: the class labels in logit order, and the training prior."""

    attribute: str
    #: numeric bucket edges the labels were made with (None: the column's own values)
    buckets: tuple[float, ...] | None
    labels: tuple[str, ...]
    #: label frequencies of the users it was trained on (runs made before it: None)
    class_prior: tuple[float, ...] | None
    #: class-weight power of the training loss, undone by the prior-adjusted decision
    prior_power: float | None
    #: what is served: "deep" (the head), "wide" (the bag model) or "wide+deep" (logits added)
    served_kind: str = "deep"
    #: the bag model (:func:`training.wide.payload.wide_payload`); None for "deep"
    wide: Mapping[str, Any] | None = None

    kind: TaskKind = dataclasses.field(default="profile", init=False)

    def to_payload(self, max_len: int) -> dict[str, Any]:
        return {
            "kind": self.kind, "attribute": self.attribute,
            "buckets": None if self.buckets is None else list(self.buckets),
            "labels": list(self.labels), "max_len": max_len,
            "class_prior": None if self.class_prior is None else list(self.class_prior),
            "prior_power": self.prior_power, "served_kind": self.served_kind,
            "wide": None if self.wide is None else dict(self.wide),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> ProfileOutputs:
        buckets, prior = payload.get("buckets"), payload.get("class_prior")
        power = payload.get("prior_power")
        return cls(
            attribute=str(payload["attribute"]),
            buckets=None if buckets is None else tuple(float(b) for b in buckets),
            labels=tuple(str(label) for label in payload["labels"]),
            class_prior=None if prior is None else tuple(float(p) for p in prior),
            prior_power=None if power is None else float(power),
            served_kind=str(payload.get("served_kind", "deep")),
            wide=payload.get("wide"),
        )


@dataclass(frozen=True, eq=False)
class RecommendOutputs:
    """A cross-domain head's outputs: candidate items of the target domain, in row order."""

    target_domain: str
    #: (C,) item keys ``domain::raw_id``
    candidate_keys: tuple[str, ...]
    #: (C,) int64 vocabulary ids of the candidates (UNK_ID below min_count)
    candidate_vocab_ids: torch.Tensor
    #: (C,) int64 training users per candidate
    candidate_popularity: torch.Tensor
    #: (C,) int64 candidate positions, most popular first (the cold-start fallback)
    popularity_ranking: torch.Tensor
    #: what is served: "deep" (the head), "wide" (reduced-rank ridge) or "wide+deep"
    served_kind: str = "deep"
    #: the ridge factors (:func:`training.wide.payload.ranking_payload`); None for "deep"
    wide: Mapping[str, Any] | None = None

    kind: TaskKind = dataclasses.field(default="cross_domain", init=False)

    def to_payload(self, max_len: int) -> dict[str, Any]:
        return {
            "kind": self.kind, "target_domain": self.target_domain,
            "candidate_keys": list(self.candidate_keys),
            "candidate_vocab_ids": self.candidate_vocab_ids,
            "candidate_popularity": self.candidate_popularity,
            "popularity_ranking": self.popularity_ranking, "max_len": max_len,
            "served_kind": self.served_kind, "wide": None if self.wide is None else dict(self.wide),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> RecommendOutputs:
        return cls(
            target_domain=str(payload["target_domain"]),
            candidate_keys=tuple(str(key) for key in payload["candidate_keys"]),
            candidate_vocab_ids=torch.as_tensor(payload["candidate_vocab_ids"]),
            candidate_popularity=torch.as_tensor(payload["candidate_popularity"]),
            popularity_ranking=torch.as_tensor(payload["popularity_ranking"]),
            served_kind=str(payload.get("served_kind", "deep")),
            wide=payload.get("wide"),
        )


TaskOutputs = ProfileOutputs | RecommendOutputs


@dataclass(frozen=True, eq=False)
class TaskArtifact:
    """Everything export needs to rebuild one task on the shared backbone."""

    task: str
    method: Method
    #: how the task's patches are built (None: no patches, e.g. head-only)
    spec: TaskSpec | None
    patch_state: dict[str, torch.Tensor]
    head_state: dict[str, torch.Tensor]
    readout: Readout
    hyperparameters: Hyperparameters
    trainable_parameters: int
    #: the pretraining checkpoint the task was trained on, and its data fingerprint
    encoder_checkpoint: str
    encoder_fingerprint: str
    code_version: str
    max_len: int
    outputs: TaskOutputs
    #: (V,) bool: vocabulary ids of the source-domain items the input keeps (cross-domain)
    source_keep: torch.Tensor | None = None

    @property
    def kind(self) -> TaskKind:
        return self.outputs.kind

    def to_payload(self) -> dict[str, Any]:
        """The ``final.pt`` dict (plain values and tensors only)."""
        payload: dict[str, Any] = {
            "task": self.task,
            "method": self.method,
            "spec": None if self.spec is None else dataclasses.asdict(self.spec),
            "patch_state": self.patch_state,
            "head_state": self.head_state,
            "readout": self.readout,
            "hyperparameters": dataclasses.asdict(self.hyperparameters),
            "trainable_parameters": self.trainable_parameters,
            "encoder_checkpoint": self.encoder_checkpoint,
            "encoder_fingerprint": self.encoder_fingerprint,
            "code_version": self.code_version,
        }
        if self.source_keep is not None:
            payload["source_keep"] = self.source_keep
        return {**payload, **self.outputs.to_payload(self.max_len)}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any], where: str = "final.pt") -> TaskArtifact:
        """Read a ``final.pt`` dict; :class:`ArtifactError` names what is missing or wrong."""
        try:
            kind = _choice(payload["kind"], TASK_KINDS, "kind", where)
            outputs: TaskOutputs = (ProfileOutputs.from_payload(payload) if kind == "profile"
                                    else RecommendOutputs.from_payload(payload))
            spec = payload.get("spec")
            keep = payload.get("source_keep")
            return cls(
                task=str(payload["task"]),
                method=_choice(payload["method"], METHODS, "method", where),
                spec=None if spec is None else TaskSpec(**spec),
                patch_state=dict(payload.get("patch_state") or {}),
                head_state=dict(payload["head_state"]),
                # runs made before readouts existed read "last"
                readout=_choice(payload.get("readout", "last"), READOUTS, "readout", where),
                hyperparameters=Hyperparameters(**payload["hyperparameters"]),
                trainable_parameters=int(payload["trainable_parameters"]),
                encoder_checkpoint=str(payload.get("encoder_checkpoint", "")),
                encoder_fingerprint=str(payload.get("encoder_fingerprint", "")),
                code_version=str(payload.get("code_version", "")),
                max_len=int(payload["max_len"]),
                outputs=outputs,
                source_keep=None if keep is None else torch.as_tensor(keep).bool(),
            )
        except KeyError as exc:
            raise ArtifactError(f"{where}: no {exc.args[0]!r}; not a uservec task model") from exc
        except (TypeError, ValueError) as exc:
            raise ArtifactError(f"{where}: unreadable task model ({exc})") from exc

    def save(self, path: str | Path) -> Path:
        """Write atomically (training.checkpoint.save_checkpoint); returns the path."""
        save_checkpoint(path, self.to_payload())
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> TaskArtifact:
        """Read a saved task model onto the CPU."""
        return cls.from_payload(load_checkpoint(path), str(path))


def _choice(value: Any, allowed: tuple[str, ...], key: str, where: str) -> Any:
    if value not in allowed:
        raise ArtifactError(f"{where}: {key} {value!r} is not one of {list(allowed)}")
    return value


def task_artifact(fit: TaskFit, pretrained: Pretrained, outputs: TaskOutputs,
                  max_len: int) -> TaskArtifact:
    """The artefact of a final fit on the shared backbone ``pretrained``."""
    network = fit.network
    spec = network.encoder.tasks.get(network.patches) if network.patches else None
    return TaskArtifact(
        task=fit.task_name,
        method=cast(Method, fit.method),
        spec=spec,
        patch_state=(
            {} if network.patches is None else task_state_dict(network.encoder, network.patches)
        ),
        head_state={k: v.detach().clone() for k, v in network.head.state_dict().items()},
        readout=network.readout,
        hyperparameters=fit.hyperparameters,
        trainable_parameters=fit.trainable_parameters,
        encoder_checkpoint=pretrained.checkpoint,
        encoder_fingerprint=str(pretrained.meta.get("dataset_fingerprint", "")),
        code_version=code_version(),
        max_len=max_len,
        outputs=outputs,
        source_keep=None if network.keep is None else network.keep.clone(),
    )


def final_payload(fit: TaskFit, pretrained: Pretrained, extra: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """The ``final.pt`` dict of a final fit, given its kind-specific part as a plain dict.

    ``extra`` holds ``kind``, ``max_len`` and the keys of :class:`ProfileOutputs` or
    :class:`RecommendOutputs`; it is typed on the way in, so a missing key fails here, at
    training time, not at export.
    """
    kind = _choice(extra.get("kind"), TASK_KINDS, "kind", "final model")
    outputs: TaskOutputs = (ProfileOutputs.from_payload(extra) if kind == "profile"
                            else RecommendOutputs.from_payload(extra))
    return task_artifact(fit, pretrained, outputs, int(extra["max_len"])).to_payload()

