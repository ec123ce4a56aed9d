"""A bundle's step graph (``model.step.onnx``): advance a user's state by one event per run.

A bundle without a step graph (exported before it existed) still serves user state: every append
then re-encodes the stored window with the full graph (:func:`encode_window`), which is correct
but costs a whole pass per append.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from uservec.contract import bags
from uservec.contract.manifest import DISABLED_OPTIMIZERS, BundleError, StepSpec
from uservec.service.engine import Bundle, Outputs

STATE_INPUT, ITEM_INPUT = "state", "item"


class StepGraph:
    """onnxruntime session of a step graph, one user at a time (B = 1)."""

    def __init__(self, bundle: Bundle, spec: StepSpec) -> None:
        path = bundle.path / spec.file
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # one event is ~10^5 multiply-adds: threads cost more
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=options, providers=["CPUExecutionProvider"],
                disabled_optimizers=list(DISABLED_OPTIMIZERS),
            )
        except Exception as exc:  # onnxruntime raises its own untyped errors on a bad model
            raise BundleError(f"{path}: onnxruntime cannot load the step graph ({exc})") from exc
        self.state_size = spec.state_size
        self.names = [o.name for o in self.session.get_outputs()]

    def empty(self) -> np.ndarray:
        return np.zeros(self.state_size, dtype=np.float32)

    def advance(self, state: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, Outputs | None]:
        """Step ``state`` (S,) through ``ids`` (n,) in order; the new state and the outputs after
        the last event (None when ``ids`` is empty)."""
        row = state.reshape(1, -1)
        values: list[np.ndarray] = []
        for item in np.asarray(ids, dtype=np.int64).tolist():
            values = self.session.run(
                self.names, {STATE_INPUT: row, ITEM_INPUT: np.array([item], dtype=np.int64)}
            )
            row = values[0]
        if not values:
            return state, None
        outputs = {name: np.array(value[0]) for name, value in zip(self.names[1:], values[1:],
                                                                    strict=True)}
        return row[0].copy(), outputs


def load_step(bundle: Bundle) -> StepGraph | None:
    """The bundle's step graph, or None when it has none."""
    spec = bundle.manifest.model.step
    return None if spec is None else StepGraph(bundle, spec)


def encode_window(bundle: Bundle, ids: np.ndarray) -> Outputs:
    """Every output for the latest ``max_len`` ids with the full graph (no step graph).

    A wide part reads the bag of every id, not only the window's.
    """
    ids = np.asarray(ids, dtype=np.int64)
    bag = bags.bag_ids(ids) if bundle.bag_size else None
    return bundle.run([bags.pack(ids[-bundle.max_len:], bag)])[0]
