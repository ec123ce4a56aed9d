"""The onnxruntime sessions of a bundle: the fused graph and its per-output subgraphs.

A bundle may ship, beside the fused graph that computes every output, one subgraph per output
(``manifest.model.graphs``, written by ``export.graphs``): ``/embed`` then runs the user-vector
pass alone instead of every task's patched encoder pass and head. Bundles without them serve every
request from the fused graph.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from uservec.contract.bags import BAG_INPUT
from uservec.contract.manifest import DISABLED_OPTIMIZERS, BundleError, BundleManifest

USER_VECTOR = "user_vector"
#: the fused graph's name in :attr:`Bundle.graphs`
FULL = "full"
#: names of the graphs one run executes, in order
Plan = tuple[str, ...]


@dataclass(frozen=True, eq=False)
class Graph:
    """One onnxruntime session and the outputs it computes."""

    name: str
    session: ort.InferenceSession
    outputs: tuple[str, ...]
    #: node count, the cost estimate :meth:`Bundle.plan` compares
    nodes: int




def _session(model_path: Path, intra_op_threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    if intra_op_threads:
        options.intra_op_num_threads = intra_op_threads
    try:
        return ort.InferenceSession(
            str(model_path), sess_options=options, providers=["CPUExecutionProvider"],
            disabled_optimizers=list(DISABLED_OPTIMIZERS),
        )
    except Exception as exc:  # onnxruntime raises its own untyped errors on a bad model
        raise BundleError(f"{model_path}: onnxruntime cannot load the model ({exc})") from exc


def fixed_length(shape: Sequence[object]) -> int | None:
    return shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None


def bag_size(session: ort.InferenceSession, model: Path) -> int:
    """Width of the graph's (B, V) float32 ``bag`` input; 0 when it takes only the window.

    A bundle whose heads have wide parts (linear models on the item bag of every event sent)
    takes the bag as a second input (``uservec.contract.bags``).
    """
    inputs = session.get_inputs()
    if len(inputs) == 1:
        return 0
    bag = inputs[1]
    if (len(inputs) != 2 or bag.name != BAG_INPUT or bag.type != "tensor(float)"
            or len(bag.shape) != 2 or not isinstance(bag.shape[1], int)):
        found = [(i.name, i.type, i.shape) for i in inputs]
        raise BundleError(f"{model}: expected a (B, L) int64 input and maybe a (B, V) float "
                          f"'bag', found {found}")
    return int(bag.shape[1])


def _check_graph(session: ort.InferenceSession, manifest: BundleManifest, model: Path) -> str:
    """The graph must take a (B, L) int64 input (and maybe the bag, :func:`bag_size`) and
    produce every output the manifest names."""
    inputs = session.get_inputs()
    bag_size(session, model)
    if inputs[0].type != "tensor(int64)" or len(inputs[0].shape) != 2:
        found = [(i.name, i.type, i.shape) for i in inputs]
        raise BundleError(f"{model}: expected one (B, L) int64 input, found {found}")
    declared = [spec.name for spec in manifest.model.inputs]
    if declared and declared[0] != inputs[0].name:
        raise BundleError(f"{model}: input is {inputs[0].name!r}, manifest says {declared[0]!r}")
    produced = {o.name for o in session.get_outputs()}
    wanted = {USER_VECTOR} | {spec.name for spec in manifest.model.outputs}
    wanted |= {task.output for task in manifest.tasks}
    missing = sorted(wanted - produced)
    if missing:
        raise BundleError(f"{model}: graph lacks outputs {missing} (has {sorted(produced)})")
    return str(inputs[0].name)




def _subgraph(root: Path, name: str, file: str, outputs: Sequence[str], nodes: int, input_name: str,
              intra_op_threads: int) -> Graph:
    path = root / file
    session = _session(path, intra_op_threads)
    inputs = [i.name for i in session.get_inputs()]
    produced = tuple(o.name for o in session.get_outputs())
    if inputs not in ([input_name], [input_name, BAG_INPUT]) or sorted(produced) != sorted(
            outputs):
        raise BundleError(f"{path}: subgraph {inputs} -> {list(produced)} does not match the "
                          f"manifest's {[input_name]} -> {list(outputs)}")
    return Graph(name, session, produced, nodes)


def load_graphs(
    root: Path, manifest: BundleManifest, model_path: Path, int8: bool, intra_op_threads: int
) -> tuple[dict[str, Graph], dict[str, str], str]:
    """The fused graph (``FULL``), the subgraphs, output -> subgraph, and the input name.

    Serving int8 uses the subgraphs' int8 twins; where the bundle has none, only the fused graph
    serves (never a mix of fp32 and int8 answers).
    """
    session = _session(model_path, intra_op_threads)
    input_name = _check_graph(session, manifest, model_path)
    outputs = tuple(o.name for o in session.get_outputs())
    graphs = {FULL: Graph(FULL, session, outputs, manifest.model.nodes or 0)}
    subgraph_of: dict[str, str] = {}
    specs = manifest.model.graphs
    if int8 and not all(spec.int8_file for spec in specs):
        specs = []
    for spec in specs:
        file = spec.int8_file if int8 else spec.file
        assert file is not None  # checked above
        graphs[spec.name] = _subgraph(root, spec.name, file, spec.outputs, spec.nodes, input_name,
                                      intra_op_threads)
        subgraph_of.update(dict.fromkeys(spec.outputs, spec.name))
    return graphs, subgraph_of, input_name
