"""Optional int8 twin of the fp32 graph, with an accuracy and speed report measured side by side.

Static QDQ quantization calibrates activation ranges on real encoded sequences (a
``CalibrationDataReader`` over them); dynamic quantization computes activation ranges per call.
Which is faster depends on the CPU (int8 dot-product instructions, AVX-512 VNNI, make static int8
pay off; without them int8 convolutions may be slower than fp32), so :func:`compare_methods`
measures both against fp32 in one run and the report records what the build machine saw.
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_dynamic,
    quantize_static,
)

from uservec.contract.bags import BAG_INPUT, graph_feed
from uservec.export import ExportError
from uservec.export.onnx_export import INPUT_NAME
from uservec.export.parity import compare_outputs, open_session, session_outputs
from uservec.training.fused import USER_VECTOR

log = logging.getLogger(__name__)

Method = Literal["static", "dynamic"]
#: the int8 twin ships only if every recommendation head keeps this much of the fp32 top-10 ...
MIN_TOP10_OVERLAP = 0.8
#: ... and every profile head agrees with the fp32 argmax this often
MIN_ARGMAX_AGREEMENT = 0.9
#: ... and every user vector (/embed) points where the fp32 one does (cosine; the ML-100K
#: encoder's static int8 twin measured a smallest cosine of 0.9996 over 128 held-out users)
MIN_USER_VECTOR_COSINE = 0.99
#: 7-bit weights: a CPU without VNNI multiplies uint8 x int8 pairs with a saturating 16-bit
#: add (vpmaddubsw), which clips full-range weights; the twin must hold on whatever CPU serves it
REDUCE_RANGE = True
#: operators whose weights are quantized (gathers, norms and element-wise ops stay fp32)
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
#: node-name prefix of the encoder (backbone + patches) in the fused graph; the rest are task heads
ENCODER_SCOPE = "/encoder/"
#: the first convolution of a residual block (and its patched twins) reads the un-normalised
#: residual stream; the second reads a layer-normed ReLU output
_RESIDUAL_CONV = re.compile(r"^/encoder/blocks\.(\d+)/convs\.0/")


class SequenceCalibrationReader(CalibrationDataReader):
    """Feeds encoded ``(N, L)`` sequences to the static quantizer in batches."""

    def __init__(self, items: np.ndarray, batch_size: int = 64, bag_size: int = 0) -> None:
        self._items = np.ascontiguousarray(items, dtype=np.int64)
        self._batch_size = batch_size
        #: vocabulary size of the graph's ``bag`` input (0: the graph has none)
        self._bag_size = bag_size
        self._batches: Iterator[np.ndarray] = self._iterate()

    def _iterate(self) -> Iterator[np.ndarray]:
        for start in range(0, self._items.shape[0], self._batch_size):
            yield self._items[start : start + self._batch_size]

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        names = [INPUT_NAME, BAG_INPUT] if self._bag_size else [INPUT_NAME]
        return graph_feed(names, batch, self._bag_size)

    def rewind(self) -> None:
        self._batches = self._iterate()


def _preprocess(fp32_path: Path, out_path: Path) -> Path:
    """Shape inference + graph optimisation the quantizer expects; falls back to the raw graph."""
    try:
        quant_pre_process(str(fp32_path), str(out_path), skip_symbolic_shape=True)
    except (
        Exception
    ) as exc:  # the pre-pass is an optimisation; quantizing the raw graph still works
        log.warning("quantization pre-processing failed (%s); quantizing the raw graph", exc)
        return fp32_path
    return out_path


def bag_size(model_path: str | Path) -> int:
    """Width of the graph's ``bag`` input (the vocabulary size), 0 when it has none."""
    import onnx

    for spec in onnx.load(str(model_path), load_external_data=False).graph.input:
        if spec.name == BAG_INPUT:
            return int(spec.type.tensor_type.shape.dim[1].dim_value)
    return 0


def head_nodes(model_path: str | Path) -> list[str]:
    """Names of the weight-carrying nodes outside the encoder: the task heads, kept in fp32.

    A head is one D x C matrix per task, no measurable share of the time, but the largest
    weights of the graph when it starts from a linear probe on standardised vectors: int8
    rounding there moved ML-100K profile metrics by up to 1.3 points, by at most 0.22 with the
    heads in fp32 (docs/int8.md#task-heads-stay-fp32). The backbone and patches carry the FLOPs
    and stay quantized.
    """
    import onnx

    graph = onnx.load(str(model_path), load_external_data=False).graph
    return [node.name for node in graph.node
            if node.op_type in QUANTIZED_OPS and not node.name.startswith(ENCODER_SCOPE)]


def residual_convs(model_path: str | Path) -> list[list[str]]:
    """Per residual block, in order: the names of the convolutions that read the residual stream.

    That stream is not normalised, so its per-tensor uint8 range is wide and rounding is coarse:
    on the Amazon and Ciao encoders (large catalogues, sampled softmax) quantizing these moved
    some users' vectors to a cosine of 0.5 with fp32, while the second convolution of each block
    quantized cleanly (docs/int8.md#residual-stream-convolutions-and-the-fp32-block-search). They
    are what :func:`quantize_within_gate` keeps fp32.
    """
    import onnx

    blocks: dict[int, list[str]] = {}
    for node in onnx.load(str(model_path), load_external_data=False).graph.node:
        match = _RESIDUAL_CONV.match(node.name)
        if node.op_type == "Conv" and match:
            blocks.setdefault(int(match.group(1)), []).append(node.name)
    return [blocks[b] for b in sorted(blocks)]


def quantize(
    fp32_path: str | Path,
    int8_path: str | Path,
    method: Method = "static",
    calibration_items: np.ndarray | None = None,
    fp32_blocks: int = 0,
) -> Path:
    """Write an int8 version of ``fp32_path``; static needs ``calibration_items`` (N, L).

    ``fp32_blocks`` keeps the residual-stream convolutions of the first that many blocks in fp32.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        source = _preprocess(fp32_path, Path(tmp) / "pre.onnx")
        _quantize_prepared(source, int8_path, method, calibration_items,
                           _fp32_nodes(source, fp32_blocks))
    return int8_path


def _fp32_nodes(source: Path, fp32_blocks: int) -> list[str]:
    """The nodes left unquantized: every task head, and the first blocks' residual convolutions."""
    return head_nodes(source) + [
        name for block in residual_convs(source)[:fp32_blocks] for name in block
    ]


def _quantize_prepared(
    source: Path,
    int8_path: Path,
    method: Method,
    calibration_items: np.ndarray | None,
    excluded: list[str],
) -> None:
    """Quantize an already pre-processed graph, leaving ``excluded`` nodes in fp32."""
    if method == "static":
        if calibration_items is None or len(calibration_items) == 0:
            raise ExportError("static int8 quantization needs calibration sequences")
        quantize_static(
            str(source),
            str(int8_path),
            SequenceCalibrationReader(calibration_items, bag_size=bag_size(source)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
            reduce_range=REDUCE_RANGE,
        )
    elif method == "dynamic":
        quantize_dynamic(
            str(source),
            str(int8_path),
            op_types_to_quantize=list(QUANTIZED_OPS),
            per_channel=True,
            weight_type=QuantType.QInt8,
            reduce_range=REDUCE_RANGE,
            # the dynamic quantizer first splits each Gemm into "<name>_MatMul" + an Add
            nodes_to_exclude=[*excluded, *(f"{name}_MatMul" for name in excluded)],
        )
    else:
        raise ValueError(f"unknown quantization method {method!r}; use static or dynamic")


def time_models(
    paths: Mapping[str, str | Path], items: np.ndarray, repeats: int = 20, threads: int = 1
) -> dict[str, float]:
    """Median seconds per batch of each model, runs interleaved so machine load hits all alike."""
    sessions = {name: open_session(path, threads) for name, path in paths.items()}
    first = next(iter(sessions.values())).get_inputs()
    feed = graph_feed([i.name for i in first], np.ascontiguousarray(items, dtype=np.int64),
                      int(first[1].shape[1]) if len(first) > 1 else 0)
    for session in sessions.values():
        session.run(None, feed)  # warm-up: allocations, kernel selection
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feed)
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def accuracy_report(
    fp32_path: str | Path,
    int8_path: str | Path,
    items: np.ndarray,
    item_vectors: Mapping[str, np.ndarray],
) -> dict[str, Any]:
    """Per-output max diff, top-10 overlap and argmax agreement of int8 vs fp32 on ``items``."""
    reference = session_outputs(open_session(fp32_path), items)
    candidate = session_outputs(open_session(int8_path), items)
    report = compare_outputs(reference, candidate, item_vectors)
    return {
        **{key: report[key] for key in ("max_abs_diff", "top_k_overlap", "argmax_agreement")},
        "user_vector_cosine": row_cosine(reference[USER_VECTOR], candidate[USER_VECTOR]),
    }


def row_cosine(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Mean and smallest cosine similarity between matching rows (a zero row counts as 0)."""
    norms = np.linalg.norm(reference, axis=1) * np.linalg.norm(candidate, axis=1)
    dots = np.sum(reference * candidate, axis=1)
    cosine = np.divide(dots, norms, out=np.zeros_like(dots, dtype=np.float64), where=norms > 0)
    return {"mean": float(cosine.mean()), "min": float(cosine.min())}


def acceptable(report: Mapping[str, Any]) -> bool:
    """Whether an int8 accuracy report clears the shipping thresholds.

    The user vector is checked too: a bundle without task heads serves only /embed, and its
    int8 twin was otherwise shipped on no evidence at all.
    """
    return (
        all(v >= MIN_TOP10_OVERLAP for v in report["top_k_overlap"].values())
        and all(v >= MIN_ARGMAX_AGREEMENT for v in report["argmax_agreement"].values())
        and report["user_vector_cosine"]["min"] >= MIN_USER_VECTOR_COSINE
    )


def quantize_within_gate(
    fp32_path: str | Path,
    int8_path: str | Path,
    method: Method,
    calibration_items: np.ndarray,
    items: np.ndarray,
    item_vectors: Mapping[str, np.ndarray],
    repeats: int = 20,
) -> dict[str, Any]:
    """Quantize, keeping one more block's residual-stream convolutions in fp32 until the twin
    passes the accuracy gate (or every block's are kept and it still fails); then time it.

    Whole-encoder int8 is fastest and holds on small catalogues (ML-100K: 2.1x, cosine >= 0.9996);
    on Amazon it drifted (cosine min 0.42) and keeping blocks 0-1's first convolutions in fp32
    passed at 1.5x. The report's ``fp32_blocks`` says where the search stopped.
    """
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    with tempfile.TemporaryDirectory() as tmp:
        source = _preprocess(fp32_path, Path(tmp) / "pre.onnx")  # once, not once per step
        fp32_blocks, blocks = 0, len(residual_convs(source))
        while True:
            _quantize_prepared(source, int8_path, method, calibration_items,
                               _fp32_nodes(source, fp32_blocks))
            report = accuracy_report(fp32_path, int8_path, items, item_vectors)
            if acceptable(report) or fp32_blocks >= blocks:
                break
            log.info("int8 with %d block(s) in fp32 fails the gate (user-vector cosine min %.4f); "
                     "keeping one more block's residual convolutions in fp32",
                     fp32_blocks, report["user_vector_cosine"]["min"])
            fp32_blocks += 1
    seconds = time_models({"fp32": fp32_path, "int8": int8_path}, items, repeats)
    report.update(
        method=method,
        n_sequences=int(items.shape[0]),
        fp32_blocks=fp32_blocks,
        seconds_per_batch=seconds,
        speedup_vs_fp32=seconds["fp32"] / seconds["int8"],
        accepted=acceptable(report),
    )
    return report


def compare_methods(
    fp32_path: str | Path,
    calibration_items: np.ndarray,
    held_out_items: np.ndarray,
    item_vectors: Mapping[str, np.ndarray],
    repeats: int = 20,
) -> dict[str, Any]:
    """Quantize both ways and time fp32, static and dynamic side by side on ``held_out_items``."""
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, str | Path] = {"fp32": fp32_path}
        result: dict[str, Any] = {}
        for method in ("static", "dynamic"):
            path = quantize(fp32_path, Path(tmp) / f"{method}.onnx", method, calibration_items)
            paths[method] = path
            result[method] = accuracy_report(fp32_path, path, held_out_items, item_vectors)
        seconds = time_models(paths, held_out_items, repeats)
    for method in ("static", "dynamic"):
        result[method]["speedup_vs_fp32"] = seconds["fp32"] / seconds[method]
    result["seconds_per_batch"] = seconds
    return result
