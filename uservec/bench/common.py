"""Shared pieces of the benchmarks: the benchmark model and bundle, sequences, timing, cores.

Benchmarks compare each figure against a reference measured in the same run (raw onnxruntime vs
HTTP, hit vs miss, encoder vs sgemm, int8 vs fp32, IVF vs exact), so a ratio holds on a shared,
noisy machine even when the absolute numbers drift between runs.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uservec.contract.ids import NUM_RESERVED, PAD_ID, item_key
from uservec.contract.manifest import DISABLED_OPTIMIZERS
from uservec.contract.vocab import Vocabulary

logger = logging.getLogger(__name__)

CPUINFO = Path("/proc/cpuinfo")


def describe_cpu(cpuinfo: str) -> str:
    """'<model name>, <int8 dot-product support>' from the text of /proc/cpuinfo.

    int8 inference only pays off with int8 dot-product instructions (AVX-512 VNNI or AVX-VNNI);
    a benchmark states what the machine it ran on had, because these machines vary.
    """
    name, flags = "unknown CPU", set[str]()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and name == "unknown CPU":
            name = value.strip()
        elif key.strip() == "flags" and not flags:
            flags = set(value.split())
    if "avx512_vnni" in flags:
        isa = "AVX-512 VNNI"
    elif "avx_vnni" in flags:
        isa = "AVX-VNNI"
    elif "avx2" in flags:
        isa = "AVX2 only (no VNNI)"
    else:
        isa = "instruction set unknown" if not flags else "no AVX2"
    return f"{name}, {isa}"


@functools.cache
def cpu_description() -> str:
    """:func:`describe_cpu` of this machine ('unknown CPU' where /proc/cpuinfo is missing).

    Cached: every suite of one ``uservec bench`` run records it, and the CPU does not change.
    """
    try:
        return describe_cpu(CPUINFO.read_text())
    except OSError:
        return describe_cpu("")


BOOKS, GAMES = "books", "games"
#: core the server (and the in-process raw engine it is compared with) runs on
SERVER_CORE = 0
#: core the load generator runs on
CLIENT_CORE = 1


@dataclass(frozen=True)
class BenchModel:
    """Size of the benchmark model (a randomly initialised NextItNet: speed needs no training)."""

    dim: int = 64
    n_blocks: int = 8
    max_len: int = 100
    n_items: int = 2000
    kernel_size: int = 3
    bottleneck: int = 16

    @property
    def dilations(self) -> tuple[int, ...]:
        """Blocks (1, 2, 4, 8) repeated, as in NextItNet."""
        return tuple(2 ** (i % 4) for i in range(self.n_blocks))

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "dilations": list(self.dilations)}


DEFAULT_MODEL = BenchModel()
QUICK_MODEL = BenchModel(dim=16, n_blocks=2, max_len=8, n_items=62, bottleneck=4)


def raw_item(position: int) -> tuple[str, str]:
    """(domain, raw id) of the position-th item: even = books ``b<i>``, odd = games ``g<i>``."""
    return (BOOKS, f"b{position}") if position % 2 == 0 else (GAMES, f"g{position}")


def bench_vocab(n_items: int) -> Vocabulary:
    return Vocabulary(tuple(item_key(i, d) for d, i in map(raw_item, range(n_items))))


def random_sequences(
    rng: np.random.Generator, n: int, length: int, vocab_size: int
) -> np.ndarray:
    """(n, length) int64 full-length sequences of real ids (no padding): every row a cache miss."""
    return rng.integers(NUM_RESERVED, vocab_size, size=(n, length), dtype=np.int64)


def calibration_items(vocab_size: int, max_len: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """Left-padded sequences of random length 1..max_len, as real users' are."""
    rng = np.random.default_rng(seed)
    out = np.full((n, max_len), PAD_ID, dtype=np.int64)
    for row in range(n):
        length = int(rng.integers(1, max_len + 1))
        out[row, max_len - length :] = rng.integers(NUM_RESERVED, vocab_size, size=length)
    return out


def bundle_items(bundle: Path) -> list[tuple[str, str]]:
    """(domain, raw id) of every real item in a bundle's vocabulary."""
    from uservec.contract.ids import split_item_key

    return [split_item_key(key) for key in Vocabulary.load(bundle / "vocab.json").keys]


def build_bench_bundle(out_dir: Path, model: BenchModel = DEFAULT_MODEL, seed: int = 0) -> Path:
    """Export a random NextItNet with the served head layout to a bundle at ``out_dir``.

    Heads: profile ``gender`` (own adapter patches) and ``age`` (head-only), recommend ``games``
    from ``books`` events (adapter patches + domain compaction): three encoder passes per user,
    the layout a PeterRec deployment serves.
    """
    import torch

    from uservec.export.bundle import TaskExport, write_bundle
    from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
    from uservec.training.model import ClassificationHead, ItemScoringHead, NextItNet

    vocab = bench_vocab(model.n_items)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        encoder = NextItNet(vocab.size, model.dim, model.dilations, model.kernel_size)
        encoder.add_task("gender", bottleneck=model.bottleneck)
        encoder.add_task("games", bottleneck=model.bottleneck)
        domain_ids = vocab.domain_ids()
        keep_books = torch.from_numpy(domain_ids == vocab.domains().index(BOOKS))
        games = tuple(k for k in vocab.keys if k.startswith(f"{GAMES}::"))
        fused = FusedUserModel(
            encoder,
            {
                "gender": ProfileTask(ClassificationHead(model.dim, 2), "gender"),
                "age": ProfileTask(ClassificationHead(model.dim, 7), None),
            },
            {"games": RecommendTask(ItemScoringHead(model.dim, len(games)), "games", keep_books)},
        )
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():  # fresh patches are identity: perturb every weight
            for param in fused.parameters():
                scale = 0.5 * param[0].numel() ** -0.5 if param.ndim > 1 else 0.1
                param.add_(torch.randn(param.shape, generator=generator) * scale)
        tasks = [
            TaskExport("gender", "profile", labels=("F", "M")),
            TaskExport("age", "profile", labels=tuple(f"a{i}" for i in range(7))),
            TaskExport("games", "recommend", domain=GAMES, source_domains=(BOOKS,),
                       item_keys=games, popularity=games),
        ]
        write_bundle(
            out_dir, fused.eval(), vocab, tasks, {"name": "bench", "model": model.to_dict()},
            f"bench-{seed}", seed, model.max_len,
            calibration_items(vocab.size, model.max_len, seed=seed), name="bench",
            index_kind="flat", overwrite=True,
        )
    finally:
        torch.set_num_threads(threads)
    return out_dir


def encoder_model(model: BenchModel, seed: int = 0) -> Any:
    """The bare encoder as a fused model with no heads (graph output: the user vector only)."""
    import torch

    from uservec.training.fused import FusedUserModel
    from uservec.training.model import NextItNet

    torch.manual_seed(seed)
    encoder = NextItNet(model.n_items + NUM_RESERVED, model.dim, model.dilations, model.kernel_size)
    return FusedUserModel(encoder, {}, {}).eval()


def ort_session(path: Path, threads: int = 1, optimization: str = "all") -> Any:
    """onnxruntime session with ``threads`` intra-op threads and sequential execution."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    levels = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    options.graph_optimization_level = levels[optimization]
    options.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=options,
                                providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))


# --- timing
def percentiles_ms(seconds: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/mean of latencies given in seconds, in milliseconds."""
    values = np.asarray(seconds, dtype=np.float64) * 1000.0
    if values.size == 0:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"),
                "mean": float("nan")}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {"p50": float(p50), "p95": float(p95), "p99": float(p99), "mean": float(values.mean())}


def throughput(fn: Callable[[], Any], units: int, min_seconds: float, min_calls: int = 3) -> float:
    """Units per second of ``fn()`` calls repeated for at least ``min_seconds``, after a warm-up."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if calls >= min_calls and elapsed >= min_seconds:
            return calls * units / elapsed


def interleaved_times(
    fns: Mapping[str, Callable[[], Any]], rounds: int, min_seconds: float = 0.0
) -> dict[str, list[float]]:
    """Seconds per call of each function, calls interleaved so machine load hits all alike."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    start = time.perf_counter()
    done = 0
    while done < rounds or time.perf_counter() - start < min_seconds:
        for name, fn in fns.items():
            begin = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - begin)
        done += 1
    return times


def stream_seed(seed: int, *tags: str) -> int:
    """A seed of its own for each phase of a run: no two phases send the same sequences."""
    digest = hashlib.sha256(repr((seed, *tags)).encode()).digest()
    return int.from_bytes(digest[:6], "little")


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is zero or missing."""
    return float(numerator / denominator) if denominator else float("nan")


# --- cores and processes
def can_pin() -> bool:
    """Whether both benchmark cores exist (the 2-core layout: server core 0, client core 1)."""
    if not hasattr(os, "sched_getaffinity"):
        return False
    return {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0)


@contextlib.contextmanager
def pinned(core: int) -> Iterator[None]:
    """Run this process on one core for the block (no-op where that core is unavailable)."""
    if not can_pin():
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {core})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def taskset_prefix(core: int) -> list[str]:
    return ["taskset", "-c", str(core)] if can_pin() and _has_taskset() else []


def _has_taskset() -> bool:
    from shutil import which

    return which("taskset") is not None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc), 0 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def single_thread_env() -> dict[str, str]:
    """Environment for a child process whose numeric libraries must use one thread."""
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[name] = "1"
    return env
