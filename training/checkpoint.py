"""Pretraining checkpoints: what they hold, how they are written, and how the encoder is read back.

A checkpoint is one ``torch.save`` dict (loadable with ``weights_only=True``): the model, head and
optimizer states, the epoch, the RNG states and early-stopping state (so a resumed run continues
bitwise where it stopped), plus what makes it traceable and rebuildable on its own: the resolved
model, pretraining and evaluation config, seed, dataset fingerprint, code version, and the size
and content hash of the vocabulary its embedding rows are indexed by. It loads on any device.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import torch

from uservec.contract.fingerprint import sha256_json
from uservec.contract.vocab import Vocabulary
from uservec.training.config import ModelConfig, PretrainConfig
from uservec.training.config_schema import build_dataclass
from uservec.training.model import NextItNet

CHECKPOINT_FORMAT_VERSION = 1
#: tensors and optimizer state; everything else is metadata
STATE_KEYS = ("model", "head", "optimizer", "rng")
#: pretraining settings that only bound how long or where a run goes on; a resume may change them
BUDGET_KEYS = ("epochs", "max_seconds", "num_threads", "device")
#: (section, key) of settings pretraining never reads: a resume may change them
NOT_PRETRAINING = frozenset({("eval", "label_fractions")})
#: where tensors land when a checkpoint is read: any machine can read any checkpoint
DEFAULT_DEVICE = "cpu"


class CheckpointError(ValueError):
    """A checkpoint is unreadable, or does not belong to the run that wants to resume from it."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> None:
    """Write atomically (temporary file + rename): an interrupted save never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format_version": CHECKPOINT_FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)


def vocab_hash(vocab: Vocabulary) -> str:
    """sha256 of a vocabulary's content: the same size with other items is another vocabulary."""
    return sha256_json(vocab.to_json())


def load_checkpoint(path: str | Path, map_location: str | torch.device = DEFAULT_DEVICE
                    ) -> dict[str, Any]:
    """Read a checkpoint onto ``map_location`` (the CPU by default), checking its format version.

    Tensors saved on a GPU load on a machine without one.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    version = payload.get("format_version")
    if version != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format {version!r} is not supported "
            f"(this code reads format {CHECKPOINT_FORMAT_VERSION})"
        )
    return payload


def checkpoint_meta(payload: dict[str, Any]) -> dict[str, Any]:
    """The metadata of a checkpoint (everything but the state tensors)."""
    return {key: value for key, value in payload.items() if key not in STATE_KEYS}


def build_encoder(model_cfg: ModelConfig, vocab_size: int) -> NextItNet:
    """The encoder a ModelConfig describes."""
    return NextItNet(
        vocab_size=vocab_size,
        dim=model_cfg.dim,
        dilations=model_cfg.dilations,
        kernel_size=model_cfg.kernel_size,
        dropout=model_cfg.dropout,
    )


def load_encoder(checkpoint_path: str | Path, map_location: str | torch.device = DEFAULT_DEVICE
                 ) -> tuple[NextItNet, dict[str, Any]]:
    """Rebuild the pretrained encoder (eval mode, on ``map_location``) from the checkpoint alone
    and return it with the checkpoint's metadata."""
    payload = load_checkpoint(checkpoint_path, map_location)
    model_cfg = build_dataclass(ModelConfig, dict(payload["config"]["model"]), "checkpoint.model")
    model = build_encoder(model_cfg, int(payload["vocab_size"]))
    model.load_state_dict(payload["model"])
    model.to(map_location)
    model.eval()
    return model, checkpoint_meta(payload)


def vocab_mismatch(meta: dict[str, Any], vocab: Vocabulary) -> str | None:
    """Why ``vocab`` is not the one a checkpoint's embedding rows are indexed by (None if it is).

    Checkpoints written before the hash was recorded are checked on the size alone.
    """
    if meta.get("vocab_size") != vocab.size:
        return f"vocabulary of {vocab.size} ids, the checkpoint's has {meta.get('vocab_size')}"
    recorded = meta.get("vocab_sha256")
    if recorded is not None and recorded != vocab_hash(vocab):
        return f"vocabulary hash {vocab_hash(vocab)[:16]}, the checkpoint's is {recorded[:16]}"
    return None


def resume_mismatches(saved: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Why a checkpoint's metadata does not match the run about to resume (empty when it does).

    Compares config, seed, dataset fingerprint and vocabulary (size, and hash where both record
    it); the run budget and where it runs (``pretrain.epochs``, ``max_seconds``,
    ``num_threads``, ``device``) and the P2 label regimes (``eval.label_fractions``) may change
    between runs. An option the checkpoint does not
    record (added to the code after it was written) matches when the run leaves it at its
    default, which is what the older code did.
    """
    problems = []
    for key in ("seed", "dataset_fingerprint", "vocab_size", "vocab_sha256"):
        if key == "vocab_sha256" and key not in saved:
            continue  # written before the hash was recorded: the size and fingerprint decide
        if saved.get(key) != expected.get(key):
            problems.append(f"{key}: checkpoint {saved.get(key)!r}, now {expected.get(key)!r}")
    saved_cfg, expected_cfg = saved.get("config", {}), expected.get("config", {})
    for section in sorted(set(saved_cfg) | set(expected_cfg)):
        old, new = dict(saved_cfg.get(section, {})), dict(expected_cfg.get(section, {}))
        for name in sorted(set(old) | set(new)):
            if (section == "pretrain" and name in BUDGET_KEYS) or (
                    (section, name) in NOT_PRETRAINING):
                continue
            if name not in old and _is_default(section, name, new.get(name)):
                continue
            if _normalise(old.get(name)) != _normalise(new.get(name)):
                problems.append(
                    f"{section}.{name}: checkpoint {old.get(name)!r}, now {new.get(name)!r}"
                )
    return problems


def _is_default(section: str, name: str, value: Any) -> bool:
    cls = {"model": ModelConfig, "pretrain": PretrainConfig}.get(section)
    fields = {f.name: f for f in dataclasses.fields(cls)} if cls else {}
    return name in fields and _normalise(fields[name].default) == _normalise(value)


def _normalise(value: Any) -> Any:
    """Lists and tuples compare equal (a config may come back from a file with lists)."""
    return tuple(value) if isinstance(value, list | tuple) else value
