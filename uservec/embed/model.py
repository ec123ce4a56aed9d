"""The bundle's graph in an onnxruntime session configured as the service's, and the output
schema it fills."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from uservec.contract.bags import BAG_INPUT, bag_ids, graph_feed
from uservec.contract.decision import Decision, prior_shift
from uservec.contract.manifest import DISABLED_OPTIMIZERS
from uservec.contract.sequences import batch_length, encode_batch
from uservec.contract.verify import load_and_verify
from uservec.contract.vocab import Vocabulary
from uservec.embed.options import EmbedError

USER_VECTOR = "user_vector"


@dataclass(frozen=True)
class ProfileOutput:
    """A profile head as bulk embedding writes it: label + probabilities under one decision."""

    name: str
    output: str
    labels: tuple[str, ...]
    #: (C,) added to the logits before the softmax; None under the as-trained rule
    shift: np.ndarray | None


@dataclass(frozen=True, eq=False)
class EmbedModel:
    bundle_version: str
    vocab: Vocabulary
    session: Any  # onnxruntime.InferenceSession
    input_name: str
    max_len: int
    dim: int
    #: the graph's sequence length when it is not dynamic
    fixed_length: int | None
    #: the vocabulary's domains when it has several: what a domain-less event resolves among
    domains: tuple[str, ...]
    heads: tuple[ProfileOutput, ...]

    @property
    def reads_bag(self) -> bool:
        """True when the graph has wide parts: they read every event, not only the window."""
        return any(i.name == BAG_INPUT for i in self.session.get_inputs())

    @property
    def outputs(self) -> list[str]:
        return [USER_VECTOR, *(head.output for head in self.heads)]

    def run(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime pass, padded as the service pads a batch (to its longest sequence).

        ``sequences`` are whole histories: the encoder reads the latest ``max_len`` ids, a wide
        part (graphs with a ``bag`` input) every id, as the service does.
        """
        length = self.fixed_length or batch_length(sequences, self.max_len)
        items = encode_batch(sequences, length)  # (B, L), left-padded
        names = [i.name for i in self.session.get_inputs()]
        size = int(self.session.get_inputs()[-1].shape[1]) if len(names) > 1 else 0
        feed = graph_feed(names, items, size, [bag_ids(s) for s in sequences])
        return list(self.session.run(self.outputs, feed))


def _profile_outputs(manifest: Any, decision: Decision,
                     attributes: Sequence[str]) -> tuple[ProfileOutput, ...]:
    available = [task.name for task in manifest.tasks if task.kind == "profile"]
    unknown = sorted(set(attributes) - set(available))
    if unknown:
        raise EmbedError(f"unknown profile attributes {unknown}; the bundle has {available}")
    heads = []
    for task in manifest.tasks:
        if task.kind != "profile" or (attributes and task.name not in attributes):
            continue
        shift = None
        if decision == "prior_adjusted":
            if task.class_prior is None or task.prior_power is None:
                raise EmbedError(f"decision 'prior_adjusted' needs head {task.name!r}'s training "
                                 "label prior, and this bundle has none (use 'as_trained')")
            shift = prior_shift(task.class_prior, task.prior_power)
        heads.append(ProfileOutput(task.name, task.output, tuple(task.labels or ()), shift))
    return tuple(heads)


def load_model(bundle: Path, *, heads: bool, decision: Decision, threads: int,
               verify_checksums: bool, attributes: Sequence[str] = ()) -> EmbedModel:
    """The bundle's vocabulary and graph, in an onnxruntime session configured as the service's."""
    import onnxruntime as ort

    manifest = load_and_verify(bundle, smoke=False, checksums=verify_checksums)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(bundle / manifest.model.file), sess_options=options,
        providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )
    shape = session.get_inputs()[0].shape
    vocab = Vocabulary.load(bundle / manifest.vocab_file)
    return EmbedModel(
        bundle_version=manifest.bundle_version,
        vocab=vocab,
        session=session,
        input_name=session.get_inputs()[0].name,
        max_len=manifest.model.max_len,
        dim=manifest.model.dim,
        fixed_length=shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None,
        domains=tuple(vocab.domains()) if len(vocab.domains()) > 1 else (),
        heads=_profile_outputs(manifest, decision, attributes) if heads else (),
    )


def output_schema(model: EmbedModel, decision: Decision) -> pa.Schema:
    """user_id, events_used, vector, then per profile head ``<task>_label``,
    ``<task>_probabilities`` (in the order of the labels listed in the schema's metadata)."""
    fields = [pa.field("user_id", pa.string()), pa.field("events_used", pa.int32()),
              pa.field("vector", pa.list_(pa.float32(), model.dim))]
    for head in model.heads:
        fields += [pa.field(f"{head.name}_label", pa.string()),
                   pa.field(f"{head.name}_probabilities", pa.list_(pa.float32(),
                                                                   len(head.labels)))]
    metadata = {"uservec.bundle_version": model.bundle_version, "uservec.max_len":
                str(model.max_len)}
    if model.heads:
        metadata["uservec.decision"] = decision
        metadata |= {f"uservec.labels.{h.name}": json.dumps(list(h.labels)) for h in model.heads}
    return pa.schema(fields, metadata=metadata)


def softmax(logits: np.ndarray) -> np.ndarray:
    """(B, C) row-wise softmax in float64, as the service computes a head's probabilities."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities
