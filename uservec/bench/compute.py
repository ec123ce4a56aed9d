"""Compute efficiency: the exported encoder's achieved FLOP/s vs a dense sgemm on the same core.

FLOPs counted (analytically, per forward): every dilated causal convolution, 2·B·L·D·D·k per
convolution (multiply + add), two convolutions per block, over all L positions (the graph computes
every position even though the user vector reads only the last). Not counted: embedding gather,
layer norms, ReLU, masking, biases (O(B·L·D) each, < 1 % at D >= 16 with k = 3).

Reference: onnxruntime ``MatMul`` (sgemm) with the same thread count (1), timed interleaved with
the encoder: a large square product (the core's practical peak) and the encoder's own im2col shape
(B·L x k·D) @ (k·D x D). A graph-optimisation ablation (none vs all) is run at the default width.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.bench.common import (
    DEFAULT_MODEL,
    QUICK_MODEL,
    SERVER_CORE,
    BenchModel,
    encoder_model,
    interleaved_times,
    ort_session,
    pinned,
    random_sequences,
    ratio,
)

logger = logging.getLogger(__name__)

TARGET_FRACTION = 0.6
PEAK_SIZE = 512


def encoder_flops(model: BenchModel, batch: int, length: int) -> int:
    """Convolution FLOPs of one encoder forward (see the module docstring)."""
    per_conv = 2 * batch * length * model.dim * model.dim * model.kernel_size
    return 2 * model.n_blocks * per_conv


def matmul_graph(path: Path, m: int, k: int, n: int, copies: int = 1) -> Path:
    """ONNX graph of ``copies`` independent (m, k) @ (k, n) ``MatMul`` nodes on one input.

    Several nodes in one run amortise the per-run overhead the way the encoder's 16 convolutions
    do, so the same-shape reference is not dominated by ``session.run`` bookkeeping.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weights = [numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), f"w{i}")
               for i in range(copies)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"]) for i in range(copies)], "sgemm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, k])],
        [helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [m, n])
         for i in range(copies)],
        initializer=weights,
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def export_encoder(model: BenchModel, path: Path, seed: int = 0) -> Path:
    """The bare encoder (no heads) as ONNX, exported like a bundle's model."""
    import torch

    from uservec.export.onnx_export import export_onnx

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(encoder_model(model, seed), path, model.n_items + 2, model.max_len)
    finally:
        torch.set_num_threads(threads)
    return path


class MatMulCausalConv:
    """Factory for a module computing a causal dilated conv as one MatMul over k shifted views."""

    @staticmethod
    def build(conv: Any) -> Any:
        import torch
        from torch import nn

        class _Conv(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                weight = conv.conv.weight.detach()  # (D_out, D_in, k)
                self.kernel = weight.shape[2]
                self.dilation = conv.conv.dilation[0]
                self.left_pad = conv.left_pad
                # (k * D_in, D_out): row block j multiplies the j-th (oldest first) shifted view
                self.weight = nn.Parameter(weight.permute(2, 1, 0).reshape(-1, weight.shape[0]))
                self.bias = nn.Parameter(conv.conv.bias.detach().clone())

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                L = x.shape[1]
                h = torch.nn.functional.pad(x, (0, 0, self.left_pad, 0))  # (B, pad + L, D)
                views = [h[:, j * self.dilation : j * self.dilation + L, :]
                         for j in range(self.kernel)]
                return torch.cat(views, dim=2) @ self.weight + self.bias  # (B, L, D)

        return _Conv()


def export_matmul_encoder(model: BenchModel, path: Path, seed: int = 0) -> tuple[Path, float]:
    """The same encoder with every Conv rewritten as one MatMul; returns (path, max |diff|)."""
    import torch

    from uservec.export.onnx_export import export_onnx

    fused = encoder_model(model, seed)
    items = torch.from_numpy(random_sequences(np.random.default_rng(seed), 2, model.max_len,
                                              model.n_items + 2))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            reference = fused(items)[0]
            for block in fused.encoder.blocks:
                for i, conv in enumerate(block.convs):
                    block.convs[i] = MatMulCausalConv.build(conv)
            diff = float((fused(items)[0] - reference).abs().max())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            export_onnx(fused, path, model.n_items + 2, model.max_len)
    finally:
        torch.set_num_threads(threads)
    return path, diff


def _timed(sessions: dict[str, tuple[Any, dict[str, np.ndarray]]], rounds: int,
           min_seconds: float) -> dict[str, float]:
    """Median seconds per run of each session, runs interleaved."""
    fns = {name: partial(session.run, None, feeds) for name, (session, feeds) in sessions.items()}
    times = interleaved_times(fns, rounds, min_seconds)
    return {name: float(np.median(values)) for name, values in times.items()}


def measure_width(model: BenchModel, batch: int, tmp: Path, rounds: int, min_seconds: float,
                  seed: int, ablation: bool = False) -> dict[str, Any]:
    """Encoder GFLOP/s at one width and batch, with its sgemm references, timed together."""
    length = model.max_len
    encoder_path = export_encoder(model, tmp / f"encoder-{model.dim}.onnx", seed)
    rng = np.random.default_rng(seed)
    items = {"items": random_sequences(rng, batch, length, model.n_items + 2)}
    m, k, n = batch * length, model.kernel_size * model.dim, model.dim
    peak_path = matmul_graph(tmp / "peak.onnx", PEAK_SIZE, PEAK_SIZE, PEAK_SIZE)
    convs = 2 * model.n_blocks
    shape_path = matmul_graph(tmp / f"shape-{model.dim}-{batch}.onnx", m, k, n, convs)
    sessions = {
        "encoder": (ort_session(encoder_path, 1), items),
        "peak": (ort_session(peak_path, 1),
                 {"x": rng.standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(np.float32)}),
        "shape": (ort_session(shape_path, 1),
                  {"x": rng.standard_normal((m, k)).astype(np.float32)}),
    }
    if ablation:
        sessions["encoder_no_opt"] = (ort_session(encoder_path, 1, "none"), items)
        matmul_path, parity = export_matmul_encoder(model, tmp / "encoder-matmul.onnx", seed)
        sessions["encoder_matmul"] = (ort_session(matmul_path, 1), items)
    with pinned(SERVER_CORE):
        seconds = _timed(sessions, rounds, min_seconds)
    flops = encoder_flops(model, batch, length)
    gflops = {
        "encoder": flops / seconds["encoder"] / 1e9,
        "peak": 2 * PEAK_SIZE**3 / seconds["peak"] / 1e9,
        "shape": 2 * m * k * n * convs / seconds["shape"] / 1e9,
    }
    row: dict[str, Any] = {
        "dim": model.dim,
        "batch": batch,
        "mflop_per_forward": flops / 1e6,
        "encoder_ms": seconds["encoder"] * 1000,
        "encoder_gflop_s": gflops["encoder"],
        "sgemm_peak_gflop_s": gflops["peak"],
        "sgemm_same_shape_gflop_s": gflops["shape"],
        "fraction_of_peak": ratio(gflops["encoder"], gflops["peak"]),
        "fraction_of_same_shape": ratio(gflops["encoder"], gflops["shape"]),
    }
    if ablation:
        row["encoder_no_opt_ms"] = seconds["encoder_no_opt"] * 1000
        row["graph_opt_speedup"] = ratio(seconds["encoder_no_opt"], seconds["encoder"])
        row["op_counts"] = _op_counts(encoder_path)
        row["encoder_matmul_ms"] = seconds["encoder_matmul"] * 1000
        row["matmul_formulation_speedup"] = ratio(seconds["encoder"], seconds["encoder_matmul"])
        row["matmul_formulation_fraction_of_peak"] = ratio(
            flops / seconds["encoder_matmul"] / 1e9, gflops["peak"])
        row["matmul_formulation_max_abs_diff"] = parity
    return row


def _op_counts(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def run_compute(quick: bool, seed: int) -> dict[str, Any]:
    """Fraction of sgemm peak over widths at the default depth, batch 1 (and 8 at default)."""
    base = QUICK_MODEL if quick else DEFAULT_MODEL
    widths = [16] if quick else [16, 32, 64, 128, 256]
    rounds, min_seconds = (3, 0.0) if quick else (20, 1.5)
    cells = [(dim, 1) for dim in widths] + ([] if quick else [(base.dim, 8)])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for dim, batch in tqdm(cells, desc="compute", leave=False):
            model = BenchModel(**{**base.__dict__, "dim": dim})
            rows.append(measure_width(model, batch, Path(tmp), rounds, min_seconds, seed,
                                      ablation=dim == base.dim and batch == 1))
    default = next(r for r in rows if r["dim"] == base.dim and r["batch"] == 1)
    return {
        "counted": "dilated causal convs: 2*B*L*D*D*k each, 2 per block, all L positions; "
                   "layer norms, ReLU, masks, biases, embedding not counted",
        "threads": 1,
        "depth_blocks": base.n_blocks,
        "sequence_length": base.max_len,
        "rows": rows,
        "target": {"dim": base.dim, "fraction_of_peak": default["fraction_of_peak"],
                   "goal": TARGET_FRACTION,
                   "met": default["fraction_of_peak"] >= TARGET_FRACTION},
    }
