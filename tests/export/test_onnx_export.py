import numpy as np
import onnx
import onnxruntime as ort
import pytest
from tiny_export import DIM, MAX_LEN, make_items

from uservec.export.onnx_export import INPUT_NAME, OPSET
from uservec.export.parity import torch_outputs


def test_graph_has_one_items_input_and_every_head_as_output(exported, fused):
    path, inputs, outputs = exported
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == [INPUT_NAME]
    assert [o.name for o in graph.output] == fused.output_names
    assert [i.model_dump() for i in inputs] == [
        {"name": "items", "dtype": "int64", "shape": ["batch", "seq"]}
    ]
    assert [o.shape for o in outputs] == [
        ["batch", DIM],
        ["batch", 2],
        ["batch", 7],
        ["batch", DIM + 1],
    ]


def test_each_distinct_input_is_embedded_once(onnx_path):
    """Backbone and adapter passes over the raw sequence share one lookup; the compacted
    cross-domain input needs its own."""
    graph = onnx.load(str(onnx_path)).graph
    lookups = [
        node
        for node in graph.node
        if node.op_type == "Gather" and "encoder.embedding.weight" in node.input
    ]
    assert len(lookups) == 2


def test_opset_is_pinned(exported):
    model = onnx.load(str(exported[0]))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {OPSET}


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (5, 3), (7, MAX_LEN), (2, 3 * MAX_LEN)])
def test_batch_and_sequence_axes_are_dynamic(exported, fused, batch, length):
    session = ort.InferenceSession(str(exported[0]), providers=["CPUExecutionProvider"])
    items = make_items(batch, seed=length, max_len=length)
    values = session.run(None, {INPUT_NAME: items})
    expected = torch_outputs(fused, items)
    for name, value in zip(fused.output_names, values, strict=True):
        np.testing.assert_allclose(value, expected[name], atol=1e-4, err_msg=name)
