from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from uservec.bench.common import QUICK_MODEL, BenchModel
from uservec.bench.compute import encoder_flops, matmul_graph, run_compute


def test_flops_count_two_convs_per_block_over_every_position() -> None:
    model = BenchModel(dim=64, n_blocks=8, kernel_size=3)
    assert encoder_flops(model, batch=1, length=100) == 16 * 2 * 100 * 64 * 64 * 3


def test_matmul_graph_computes_the_product(tmp_path: Path) -> None:
    path = matmul_graph(tmp_path / "m.onnx", 4, 3, 2, copies=2)
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y0, y1 = ort.InferenceSession(str(path)).run(None, {"x": x})
    assert y0.shape == (4, 2) and y1.shape == (4, 2) and not np.allclose(y0, y1)


def test_quick_compute_fractions_come_from_two_measurements() -> None:
    result = run_compute(quick=True, seed=0)
    (row,) = result["rows"]
    assert row["dim"] == QUICK_MODEL.dim and row["batch"] == 1
    assert row["fraction_of_peak"] == pytest.approx(
        row["encoder_gflop_s"] / row["sgemm_peak_gflop_s"])
    assert row["encoder_gflop_s"] == pytest.approx(
        row["mflop_per_forward"] / row["encoder_ms"])  # MFLOP/ms = GFLOP/s
    assert row["matmul_formulation_max_abs_diff"] < 1e-4  # same function, other graph
    assert row["graph_opt_speedup"] > 0
