"""Benchmarks and robustness checks: ``run_bench`` writes ``bench.json`` and ``bench.md``.

    uservec bench                 # main suite: serving, cache, compute, int8, training (< 15 min)
    uservec bench --scale         # retrieval over 1M items only (< 30 min)
    uservec bench --robustness    # load, faults, fuzzing, hostile inputs only
    uservec bench --embed         # bulk embedding only: users/s and peak RSS, 1 vs N workers
    uservec bench --user-state    # appending to a stored user vs re-encoding its history
    uservec bench --scaling ddp   # training at scale: ddp (1 vs 2 processes), baselines, data
    uservec bench --quick         # tiny sizes, seconds (what the tests run)

Without ``--bundle`` the benchmarks build their own bundle from a randomly initialised NextItNet
of the default size (dim 64, 8 blocks, max_len 100, ~2000 items, 2 profile heads, 1 cross-domain
recommend head): speed does not depend on training. Every ratio is taken between two measurements
of the same run (see :mod:`training.bench.common`).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from uservec.bench.common import (
    DEFAULT_MODEL,
    QUICK_MODEL,
    build_bench_bundle,
    cpu_description,
)

__all__ = ["run_bench"]

logger = logging.getLogger(__name__)


def _load() -> str:
    try:
        return " ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _section(results: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]]) -> None:
    """Run one benchmark; a failure is recorded in its section and the others still run."""
    logger.info("bench: %s", name)
    start = time.perf_counter()
    try:
        results[name] = fn()
    except Exception as exc:  # one broken benchmark must not lose the others' numbers
        logger.exception("benchmark %s failed", name)
        results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    results[name]["seconds"] = time.perf_counter() - start


def _main_suite(results: dict[str, Any], target: Path, work: Path, quick: bool, seed: int,
                only: Sequence[str]) -> None:
    """Serving, cache, compute, int8 and training speed (``only``: some of them)."""
    from uservec.bench.cache import run_cache
    from uservec.bench.compute import run_compute
    from uservec.bench.int8 import run_int8
    from uservec.bench.serving import run_serving
    from uservec.bench.train_speed import run_train_speed

    suite: dict[str, Callable[[], dict[str, Any]]] = {
        "serving": lambda: run_serving(target, work, quick, seed),
        "cache": lambda: run_cache(target, work, quick, seed),
        "compute": lambda: run_compute(quick, seed),
        "int8": lambda: run_int8(target, quick, seed),
        "train_speed": lambda: run_train_speed(quick, seed),
    }
    unknown = sorted(set(only) - set(suite))
    if unknown:
        raise ValueError(f"unknown bench sections {unknown}; choose from {sorted(suite)}")
    for name, section in suite.items():
        if not only or name in only:
            _section(results, name, section)


def _robustness(results: dict[str, Any], target: Path, work: Path, quick: bool,
                seed: int) -> None:
    """Load, faults, fuzzing, hostile inputs, slow clients; fuzzed on a small bundle of its own
    outside ``quick`` (the demo's bundle is trained inside)."""
    from uservec.bench.robustness import run_robustness

    fuzz_bundle = target if quick else build_bench_bundle(work / "fuzz-bundle", QUICK_MODEL, seed)
    _section(results, "robustness", lambda: run_robustness(target, fuzz_bundle, work, quick, seed))


def _meta(bundle: Path | None, quick: bool, seed: int, scaling_only: bool) -> dict[str, Any]:
    """The machine, its load, the code and the model benchmarked."""
    from datetime import UTC, datetime

    from uservec.contract.fingerprint import code_version

    model = QUICK_MODEL if quick else DEFAULT_MODEL
    source = (str(bundle) if bundle else "each section's own (see its text)" if scaling_only
              else f"random NextItNet {model.to_dict()} (built for this run)")
    return {
        "cpu": cpu_description(), "cores": os.cpu_count(), "seed": seed, "quick": quick,
        "load_before": _load(), "model_source": source,
        "date": datetime.now(UTC).date().isoformat(), "code_version": code_version(),
    }


def _scaling(results: dict[str, Any], work: Path, quick: bool, parts: Sequence[str]) -> None:
    """Training at scale (docs/scaling.md): processes, baselines, data larger than memory."""
    from uservec.bench.baselines import run_baselines_bench
    from uservec.bench.data_scale import run_data_scale_bench
    from uservec.bench.ddp import run_ddp_bench

    suite: dict[str, Callable[[], dict[str, Any]]] = {
        "ddp": lambda: run_ddp_bench(work, quick),
        "baselines": lambda: run_baselines_bench(quick),
        "data_scale": lambda: run_data_scale_bench(work, quick),
    }
    for name in parts:
        _section(results, name, suite[name])


def run_bench(out_dir: Path, bundle: Path | None, quick: bool, scale: bool, robustness: bool,
              seed: int = 0, only: Sequence[str] = (), embed: bool = False,
              scaling: Sequence[str] = (), user_state: bool = False) -> dict[str, Any]:
    """Run the selected benchmarks, write ``out_dir/bench.json`` and ``out_dir/bench.md``.

    None of ``scale``, ``robustness``, ``embed``: the main suite (``only`` narrows it to some
    sections). Otherwise only the parts selected (several may be given). ``quick``: tiny sizes
    for tests.
    Server logs stay in ``out_dir/logs``.
    """
    from uservec.bench import report

    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    work = out_dir / "logs"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    scaling_only = bool(scaling) and not (scale or robustness or embed)
    results: dict[str, Any] = {"meta": _meta(bundle, quick, seed, scaling_only)}
    main_suite = not scale and not robustness and not embed and not scaling and not user_state
    target = Path(bundle) if bundle else None
    if target is None and (main_suite or robustness or embed):
        target = build_bench_bundle(work / "bundle", QUICK_MODEL if quick else DEFAULT_MODEL, seed)
    if main_suite:
        assert target is not None
        _main_suite(results, target, work, quick, seed, only)
    if scale:
        from uservec.bench.retrieval import run_retrieval

        _section(results, "retrieval", lambda: run_retrieval(bundle, quick, seed))
    if robustness:
        assert target is not None
        _robustness(results, target, work, quick, seed)
    if embed:
        from uservec.bench.embed import run_embed_bench

        assert target is not None
        _section(results, "embed", lambda: run_embed_bench(target, work, quick, seed))
    if scaling:
        _scaling(results, work, quick, scaling)
    if user_state:
        from uservec.bench.user_state import run_user_state

        _section(results, "user_state", lambda: run_user_state(work, quick, seed))
    results["meta"]["load_after"] = _load()
    results["meta"]["seconds"] = time.perf_counter() - start
    report.write(results, out_dir)
    logger.info("bench: wrote %s and %s", out_dir / "bench.json", out_dir / "bench.md")
    return report.strict_json(results)
