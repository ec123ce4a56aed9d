import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_export import make_items

from uservec.export import ExportError
from uservec.export.onnx_export import INPUT_NAME
from uservec.export.parity import parity_summary
from uservec.export.quantize import (
    ENCODER_SCOPE,
    SequenceCalibrationReader,
    acceptable,
    compare_methods,
    head_nodes,
    quantize,
    quantize_within_gate,
    residual_convs,
    row_cosine,
)


@pytest.fixture(scope="module")
def fp32_path(onnx_path):
    return onnx_path


@pytest.fixture(scope="module")
def vectors(fused):
    with torch.no_grad():
        return {n: fused.item_vectors(n).numpy() for n in fused.recommend_heads}


def test_calibration_reader_yields_every_row_once_per_pass():
    items = make_items(10)
    reader = SequenceCalibrationReader(items, batch_size=4)
    for _ in range(2):
        batches = list(iter(reader.get_next, None))
        assert [b[INPUT_NAME].shape[0] for b in batches] == [4, 4, 2]
        np.testing.assert_array_equal(np.concatenate([b[INPUT_NAME] for b in batches]), items)
        reader.rewind()


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_int8_model_loads_keeps_the_signature_and_stays_close(fp32_path, vectors, method, tmp_path):
    int8_path = tmp_path / f"{method}.onnx"
    report = quantize_within_gate(fp32_path, int8_path, method, make_items(96),
                                  make_items(64, seed=5), vectors, repeats=3)
    ops = {node.op_type for node in onnx.load(str(int8_path)).graph.node}
    expected_op = "DequantizeLinear" if method == "static" else "DynamicQuantizeLinear"
    assert expected_op in ops
    session = ort.InferenceSession(str(int8_path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [INPUT_NAME]
    assert report["fp32_blocks"] == 0  # the tiny encoder passes with every block quantized
    assert report["top_k_overlap"]["query.games"] >= 0.8
    assert min(report["argmax_agreement"].values()) >= 0.9
    assert max(report["max_abs_diff"].values()) < 2.0
    assert report["user_vector_cosine"]["min"] >= 0.99
    assert report["accepted"] and report["speedup_vs_fp32"] > 0


def test_an_int8_twin_whose_user_vectors_drift_is_not_shipped():
    """A bundle without heads serves /embed only: the user vector alone must decide."""
    report = {"top_k_overlap": {}, "argmax_agreement": {},
              "user_vector_cosine": {"mean": 0.97, "min": 0.9}}
    assert not acceptable(report)
    assert acceptable({**report, "user_vector_cosine": {"mean": 1.0, "min": 0.999}})
    assert row_cosine(np.eye(2), np.array([[1.0, 0.0], [1.0, 1.0]])) == pytest.approx(
        {"mean": (1 + 2**-0.5) / 2, "min": 2**-0.5})


def test_methods_are_compared_side_by_side_against_fp32(fp32_path, vectors):
    result = compare_methods(fp32_path, make_items(64), make_items(32, seed=3), vectors, repeats=2)
    assert set(result["seconds_per_batch"]) == {"fp32", "static", "dynamic"}
    for method in ("static", "dynamic"):
        assert result[method]["speedup_vs_fp32"] > 0
        assert result[method]["top_k_overlap"]["query.games"] >= 0.8


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_task_heads_stay_fp32_and_the_encoder_is_quantized(fp32_path, method, tmp_path):
    heads = head_nodes(fp32_path)
    assert heads and not any(name.startswith(ENCODER_SCOPE) for name in heads)
    graph = onnx.load(str(fp32_path)).graph
    weights = {node.input[1] for node in graph.node if node.name in heads}
    int8 = onnx.load(str(quantize(fp32_path, tmp_path / "q.onnx", method, make_items(64)))).graph
    tensors = {t.name: t for t in int8.initializer}
    for weight in weights:  # still float (the dynamic quantizer may store it transposed)
        kept = [tensors[name] for name in tensors if name.startswith(weight)]
        assert kept and all(t.data_type == onnx.TensorProto.FLOAT for t in kept)
        assert not any("quantized" in t.name for t in kept)
    assert any(name.startswith("encoder.") and "quantized" in name for name in tensors)


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_int8_weights_use_seven_bits_so_cpus_without_vnni_do_not_saturate(
    fp32_path, method, tmp_path
):
    """Full-range int8 weights clip in the 16-bit pair sums of AVX2 kernels: on an AVX2 EPYC the
    ML-100K twin's age argmax agreed with fp32 on 0.89 of users (refused), 0.96 with 7 bits."""
    int8 = onnx.load(str(quantize(fp32_path, tmp_path / "q.onnx", method, make_items(64)))).graph
    weights = [onnx.numpy_helper.to_array(t) for t in int8.initializer
               if t.data_type == onnx.TensorProto.INT8 and t.dims]
    assert weights
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) <= 64
    assert max(int(np.abs(w.astype(np.int32)).max()) for w in weights) > 32  # not fewer bits


def test_static_quantization_needs_calibration_data(fp32_path, tmp_path):
    with pytest.raises(ExportError, match="calibration"):
        quantize(fp32_path, tmp_path / "int8.onnx", "static", None)


def test_the_disabled_fusion_exists_and_keeps_skip_layer_norm_out_of_the_int8_graph(
    fp32_path, tmp_path
):
    """The fused SkipLayerNormalization kernel made int8 bundles with patches ~1.2x of fp32
    instead of ~2x (docs/int8.md#skiplayernormalization-fusion-is-off): every session the project
    opens disables it."""
    from uservec.contract.manifest import DISABLED_OPTIMIZERS

    int8_path = quantize(fp32_path, tmp_path / "q.onnx", "static", make_items(64))

    def optimized_ops(disabled):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / f"opt-{len(disabled)}.onnx")
        ort.InferenceSession(str(int8_path), options, providers=["CPUExecutionProvider"],
                             disabled_optimizers=disabled)
        return {node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node}

    assert "SkipLayerNormalization" in optimized_ops([])
    assert "SkipLayerNormalization" not in optimized_ops(list(DISABLED_OPTIMIZERS))


def test_residual_convolutions_are_the_first_of_each_block(fp32_path):
    blocks = residual_convs(fp32_path)
    assert len(blocks) == 4  # tiny encoder: 4 blocks (its patched twins join block lists)
    for index, names in enumerate(blocks):
        assert names and all(n.startswith(f"/encoder/blocks.{index}/convs.0/") for n in names)


def test_fp32_blocks_keeps_those_convolutions_float_and_quantizes_the_rest(fp32_path, tmp_path):
    int8_path = quantize(fp32_path, tmp_path / "q.onnx", "static", make_items(64), fp32_blocks=2)
    blocks = residual_convs(fp32_path)
    int8 = onnx.load(str(int8_path)).graph
    float_weights = {t.name for t in int8.initializer if t.data_type == onnx.TensorProto.FLOAT}
    graph = onnx.load(str(fp32_path)).graph
    weight_of = {node.name: node.input[1] for node in graph.node if node.op_type == "Conv"}
    assert all(weight_of[n] in float_weights for block in blocks[:2] for n in block)
    assert not any(weight_of[n] in float_weights for block in blocks[2:] for n in block)


def test_a_failing_twin_keeps_more_blocks_fp32_until_it_passes(
    fp32_path, vectors, tmp_path, monkeypatch
):
    """Amazon's whole-encoder twin drifted (cosine min 0.42); with blocks 0-1's residual
    convolutions in fp32 it passed. The search stops at the first setting that passes."""
    import uservec.export.quantize as module

    verdicts = iter([False, False, True, True])  # gate calls: 0 blocks, 1, 2, then the report
    monkeypatch.setattr(module, "acceptable", lambda report: next(verdicts))
    report = quantize_within_gate(fp32_path, tmp_path / "q.onnx", "static", make_items(64),
                                  make_items(16, seed=5), vectors, repeats=1)
    assert report["fp32_blocks"] == 2 and report["accepted"]
    assert "residual convolutions of 2 block(s) kept fp32" in parity_summary({"int8": report})[0]


def test_a_twin_that_never_passes_is_refused_with_every_block_tried(
    fp32_path, vectors, tmp_path, monkeypatch
):
    import uservec.export.quantize as module

    calls = []
    monkeypatch.setattr(module, "acceptable", lambda report: calls.append(1) and False)
    report = quantize_within_gate(fp32_path, tmp_path / "q.onnx", "static", make_items(64),
                                  make_items(16, seed=5), vectors, repeats=1)
    assert report["fp32_blocks"] == len(residual_convs(fp32_path)) and not report["accepted"]
    assert len(calls) == report["fp32_blocks"] + 2  # one per setting tried, one for the report
    assert "refused (fp32 only)" in parity_summary({"int8": report})[0]
