"""Fused torch model -> ONNX graph with dynamic batch and sequence axes, checked by onnx.checker.

Uses the TorchScript-based exporter (``dynamo=False``): for a conv encoder it gives a compact graph
and its ``dynamic_axes`` make both the batch and the sequence axis free with no shape guards.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from uservec.contract.bags import BAG_INPUT, bag_ids, bag_matrix
from uservec.contract.ids import NUM_RESERVED, PAD_ID
from uservec.contract.manifest import TensorSpec
from uservec.export import ExportError
from uservec.training.fused import FusedUserModel

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME = "items"
BATCH_AXIS, SEQ_AXIS = "batch", "seq"


def trace_items(vocab_size: int, max_len: int, batch: int = 3, seed: int = 0) -> torch.Tensor:
    """A (B, L) example input with padding, a full row and a one-event row, for tracing."""
    rng = np.random.default_rng(seed)
    items = rng.integers(NUM_RESERVED, max(vocab_size, NUM_RESERVED + 1), size=(batch, max_len))
    items[0, : max_len // 2] = PAD_ID
    items[-1, :-1] = PAD_ID
    return torch.from_numpy(items.astype(np.int64))


def export_onnx(
    model: FusedUserModel, path: str | Path, vocab_size: int, max_len: int, opset: int = OPSET
) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Write ``model`` as ONNX to ``path``; return the graph's input and output specs."""
    path = Path(path)
    model = model.eval()
    example = trace_items(vocab_size, max_len)
    args: tuple[torch.Tensor, ...] = (example,)
    input_names = [INPUT_NAME]
    if model.needs_bag:  # wide parts read every event sent: a (B, V) 0/1 bag beside the window
        bag = bag_matrix([bag_ids(row) for row in example.numpy()], vocab_size)
        args, input_names = (example, torch.from_numpy(bag)), [INPUT_NAME, BAG_INPUT]
    names = model.output_names
    with torch.no_grad():
        sample = model(*args)
    dynamic_axes = {INPUT_NAME: {0: BATCH_AXIS, 1: SEQ_AXIS}, BAG_INPUT: {0: BATCH_AXIS}}
    dynamic_axes.update({name: {0: BATCH_AXIS} for name in names})
    with warnings.catch_warnings():
        # The legacy exporter warns about its own deprecation and constant-folding limits.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            args,
            str(path),
            input_names=input_names,
            output_names=names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    inputs = [i.name for i in graph.graph.input]
    if inputs != input_names:
        raise ExportError(f"{path}: expected the inputs {input_names}, graph has {inputs}")
    outputs = [o.name for o in graph.graph.output]
    if outputs != names:
        raise ExportError(f"{path}: graph outputs {outputs} differ from the model's {names}")
    log.info("exported %s (opset %d, %d outputs)", path, opset, len(names))
    input_specs = [TensorSpec(name=INPUT_NAME, dtype="int64", shape=[BATCH_AXIS, SEQ_AXIS])]
    if model.needs_bag:
        input_specs.append(TensorSpec(name=BAG_INPUT, dtype="float32",
                                      shape=[BATCH_AXIS, vocab_size]))
    output_specs = [
        TensorSpec(name=name, dtype="float32", shape=[BATCH_AXIS, int(value.shape[1])])
        for name, value in zip(names, sample, strict=True)
    ]
    return input_specs, output_specs
