from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from uservec.bench.common import (
    DEFAULT_MODEL,
    bundle_items,
    cpu_description,
    describe_cpu,
    interleaved_times,
    percentiles_ms,
    random_sequences,
    ratio,
    stream_seed,
)
from uservec.contract.ids import NUM_RESERVED


def test_phase_seeds_are_stable_and_distinct() -> None:
    assert stream_seed(0, "raw", "1") == stream_seed(0, "raw", "1")
    seeds = {stream_seed(s, tag, level) for s in (0, 1) for tag in ("on", "off")
             for level in ("1", "8")}
    assert len(seeds) == 8


def test_random_sequences_are_full_length_real_ids() -> None:
    rows = random_sequences(np.random.default_rng(0), 5, 100, 2002)
    assert rows.shape == (5, 100) and rows.dtype == np.int64
    assert rows.min() >= NUM_RESERVED and rows.max() < 2002
    assert len({r.tobytes() for r in rows}) == 5  # every row a cache miss


def test_percentiles_in_milliseconds() -> None:
    stats = percentiles_ms([0.001] * 98 + [0.1, 0.1])
    assert stats["p50"] == 1.0 and stats["p99"] > 50
    assert math.isnan(percentiles_ms([])["p50"])


def test_ratio_guards_zero() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert math.isnan(ratio(3.0, 0.0))


def test_interleaved_times_times_every_function_each_round() -> None:
    calls: list[str] = []
    times = interleaved_times({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")},
                              rounds=3)
    assert [len(times["a"]), len(times["b"])] == [3, 3]
    assert calls[2:] == ["a", "b"] * 3  # after one warm-up call each, strictly alternating


def test_default_model_is_the_briefed_size() -> None:
    assert (DEFAULT_MODEL.dim, DEFAULT_MODEL.n_blocks, DEFAULT_MODEL.max_len) == (64, 8, 100)
    assert DEFAULT_MODEL.dilations == (1, 2, 4, 8, 1, 2, 4, 8)


def test_quick_bundle_serves_every_head(quick_bundle: Path) -> None:
    session = ort.InferenceSession(str(quick_bundle / "model.onnx"))
    names = [o.name for o in session.get_outputs()]
    assert names == ["user_vector", "profile.gender", "profile.age", "query.games"]
    items = bundle_items(quick_bundle)
    assert {domain for domain, _ in items} == {"books", "games"}


@pytest.mark.parametrize(
    ("flags", "isa"),
    [
        ("fpu sse2 avx2 avx512f avx512_vnni avx_vnni", "AVX-512 VNNI"),
        ("fpu sse2 avx2 avx_vnni", "AVX-VNNI"),
        ("fpu sse2 avx2 fma", "AVX2 only (no VNNI)"),
        ("fpu sse2", "no AVX2"),
    ],
)
def test_describe_cpu_names_the_model_and_its_int8_dot_product_support(flags, isa):
    """The int8 benchmark once printed a hard-coded 'AMD EPYC, AVX2 only' on an Intel machine
    with AVX-512 VNNI; the description now comes from the machine it runs on."""
    text = f"processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
    assert describe_cpu(text) == f"Some CPU 9000, {isa}"


def test_describe_cpu_without_cpuinfo():
    assert describe_cpu("") == "unknown CPU, instruction set unknown"
    assert cpu_description()  # this machine: never raises
