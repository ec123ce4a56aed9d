"""Streaming model -> ``model.step.onnx``: (state, one event per user) -> (new state, outputs).

The service keeps one flat float32 state row per user and runs this graph once per appended event,
instead of re-encoding the whole history with ``model.onnx`` (see training/streaming.py and
docs/service.md#user-state). The export is refused unless streaming the parity rows event by event
through onnxruntime reproduces the fused torch model on the whole rows (:data:`ABS_TOL`).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from uservec.contract.ids import PAD_ID
from uservec.contract.manifest import StepSpec, TensorSpec
from uservec.export.onnx_export import BATCH_AXIS, OPSET
from uservec.export.parity import ABS_TOL, ParityError, open_session, torch_outputs
from uservec.training.fused import FusedUserModel
from uservec.training.streaming import (
    ITEM_INPUT,
    STATE_INPUT,
    STATE_OUTPUT,
    StreamingUserModel,
    receptive_field,
)

log = logging.getLogger(__name__)

STEP_FILE = "model.step.onnx"


def export_step(fused: FusedUserModel, path: str | Path, max_len: int) -> StepSpec:
    """Write the step graph of ``fused`` to ``path``; return its manifest entry."""
    path = Path(path)
    step = StreamingUserModel(fused).eval()
    names = [STATE_OUTPUT, *step.output_names]
    example = (step.empty_state(2), torch.tensor([PAD_ID, step.encoder.vocab_size - 1]))
    dynamic_axes = {name: {0: BATCH_AXIS} for name in [STATE_INPUT, ITEM_INPUT, *names]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's own deprecation notes
        torch.onnx.export(
            step, example, str(path), input_names=[STATE_INPUT, ITEM_INPUT], output_names=names,
            dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True,
            dynamo=False,
        )
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    with torch.no_grad():
        sample = step(*example)
    outputs = [TensorSpec(name=n, dtype="float32", shape=[BATCH_AXIS, int(v.shape[1])])
               for n, v in zip(names, sample, strict=True)]
    log.info("exported step graph %s (state %d floats)", path, step.state_size)
    return StepSpec(
        file=path.name, state_size=step.state_size, receptive_field=receptive_field(
            step.encoder), max_len=max_len,
        inputs=[TensorSpec(name=STATE_INPUT, dtype="float32", shape=[BATCH_AXIS, step.state_size]),
                TensorSpec(name=ITEM_INPUT, dtype="int64", shape=[BATCH_AXIS])],
        outputs=outputs,
    )


def stream_session(path: str | Path, state_size: int, items: np.ndarray) -> dict[str, np.ndarray]:
    """Stream left-padded rows ``items`` (B, L) through the step graph from the empty state."""
    session = open_session(path)
    names = [o.name for o in session.get_outputs()]
    state = np.zeros((items.shape[0], state_size), dtype=np.float32)
    values: list[np.ndarray] = []
    for t in range(items.shape[1]):
        column = np.ascontiguousarray(items[:, t], dtype=np.int64)
        values = session.run(names, {STATE_INPUT: state, ITEM_INPUT: column})
        state = values[0]
    return dict(zip(names, values, strict=True))


def check_step_parity(
    fused: FusedUserModel, path: str | Path, spec: StepSpec, items: np.ndarray
) -> dict[str, Any]:
    """Max abs diff per output, step graph streamed vs torch on whole rows; raises over tol."""
    rows = np.asarray(items, dtype=np.int64)
    streamed = stream_session(path, spec.state_size, rows)
    expected = torch_outputs(fused, rows)
    diffs = {name: float(np.max(np.abs(streamed[name] - value)))
             for name, value in expected.items()}
    worst = max(diffs.values())
    if not worst <= ABS_TOL:  # also refuses NaN
        raise ParityError(f"step graph {path}: max abs diff {worst:.3g} > {ABS_TOL} ({diffs})")
    return {"rows": int(rows.shape[0]), "max_abs_diff": diffs}
