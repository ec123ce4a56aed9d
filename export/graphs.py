"""Per-output subgraphs of the fused graph: each endpoint runs only what it returns.

onnxruntime computes every node of a graph whatever outputs a caller asks for, so ``/embed`` on the
fused graph pays for every task's patched encoder pass and head. :func:`write_graphs` cuts one
subgraph per output (``onnx.utils.extract_model``: the nodes that output depends on, nothing else)
into ``graphs/``, checks that each reproduces the fused graph's values on the parity rows, and
returns the manifest entries (:class:`~uservec.contract.manifest.GraphSpec`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils

from uservec.contract.bags import BAG_INPUT
from uservec.contract.manifest import GraphSpec
from uservec.export.onnx_export import INPUT_NAME
from uservec.export.parity import ABS_TOL, ParityError, open_session, session_outputs

log = logging.getLogger(__name__)

GRAPHS_DIR = "graphs"


def node_count(path: str | Path) -> int:
    """Nodes of an ONNX graph (subgraphs of control-flow nodes not counted)."""
    return len(onnx.load(str(path), load_external_data=False).graph.node)


def extract_graph(source: Path, target: Path, outputs: Sequence[str]) -> int:
    """Write the part of ``source`` that ``outputs`` depend on to ``target``; its node count."""
    target.parent.mkdir(parents=True, exist_ok=True)
    inputs = [i.name for i in onnx.load(str(source), load_external_data=False).graph.input]
    try:
        onnx.utils.extract_model(str(source), str(target), [INPUT_NAME], list(outputs),
                                 check_model=True)
    except Exception:  # the outputs read the item bag too (a wide part): keep that input
        if BAG_INPUT not in inputs:
            raise
        onnx.utils.extract_model(str(source), str(target), [INPUT_NAME, BAG_INPUT],
                                 list(outputs), check_model=True)
    return node_count(target)


def _max_diff(full: dict[str, np.ndarray], part: dict[str, np.ndarray]) -> float:
    return max(float(np.max(np.abs(full[name] - value), initial=0.0))
               for name, value in part.items())


def write_graphs(
    root: Path, model_file: str, int8_file: str | None, held_out: np.ndarray,
) -> tuple[list[GraphSpec], dict[str, Any]]:
    """One subgraph per output of ``root/model_file`` (and of its int8 twin) under ``graphs/``.

    Raises :class:`ParityError` when a subgraph's values differ from the fused graph's by more
    than the export tolerance; returns the specs and a parity report (max abs diff per graph).
    """
    model_path = root / model_file
    names = [o.name for o in onnx.load(str(model_path), load_external_data=False).graph.output]
    full = session_outputs(open_session(model_path), held_out)
    specs: list[GraphSpec] = []
    report: dict[str, Any] = {}
    for name in names:
        file = f"{GRAPHS_DIR}/{name}.onnx"
        nodes = extract_graph(model_path, root / file, [name])
        diff = _max_diff(full, session_outputs(open_session(root / file), held_out))
        if not diff <= ABS_TOL:
            raise ParityError(f"subgraph {file} differs from {model_file} by {diff:.3g}")
        twin = None
        if int8_file is not None:
            twin = f"{GRAPHS_DIR}/{name}.int8.onnx"
            extract_graph(root / int8_file, root / twin, [name])
        specs.append(GraphSpec(name=name, file=file, outputs=[name], int8_file=twin,
                               nodes=nodes))
        report[name] = {"max_abs_diff": diff, "nodes": nodes}
    log.info("wrote %d per-output graphs (%s nodes; fused graph %d)", len(specs),
             [spec.nodes for spec in specs], node_count(model_path))
    return specs, report
