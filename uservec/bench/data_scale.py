"""Data larger than memory: the cost curve of preparation and pretraining over dataset size.

For each size (1M, 10M, 50M events of the demo's generator, scaled: ``synthetic_stream``; items
grow with the events, 1 per 1,000), written to the temporary folder, never the repository:

* ``prepare``: chunked preparation (``training.data.chunked``) in its own process: seconds and
  peak RSS (the process's high-water mark);
* ``epoch``: pretraining steps on the memory-mapped result (lazy windows, sampled softmax) in its
  own process, for at most ``EPOCH_SECONDS``: events/s (training targets per second), the share of
  the epoch done, the epoch's projected seconds, and peak RSS.

Each stage runs in a fresh interpreter so that each peak belongs to that stage and size alone.

    python -m uservec.bench.data_scale 1000000   # one size, JSON on stdout
"""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SIZES = (1_000_000, 10_000_000, 50_000_000)
QUICK_SIZES = (20_000,)
#: pretraining time measured per size (a 50M-event epoch takes hours on 2 cores)
EPOCH_SECONDS = 90.0
CHUNK_ROWS = 1_000_000
MAX_LEN, BATCH_SIZE, DIM = 32, 256, 64
#: target of docs/scaling.md: peak RSS at 50M events
RSS_TARGET_MB = 4096


def _stage(*args: str) -> dict[str, Any]:
    """Run one stage of this module in a fresh interpreter; its JSON result."""
    done = subprocess.run([sys.executable, "-m", "uservec.bench.data_scale", *args],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {args[0]} failed: {done.stderr[-3000:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _peak_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def generate(path: str, events: int) -> dict[str, Any]:
    from uservec.training.data.synthetic_stream import write_synthetic_events

    started = time.perf_counter()
    written = write_synthetic_events(Path(path), events, max(100, events // 1000))
    return {"events": written, "seconds": round(time.perf_counter() - started, 1)}


def prepare(path: str, out: str, chunk_rows: int) -> dict[str, Any]:
    from uservec.training.data.chunked import prepare_chunked

    started = time.perf_counter()
    dataset = prepare_chunked(Path(path), Path(out), name=Path(path).stem, chunk_rows=chunk_rows)
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": _peak_mb(),
            "users": dataset.num_users, "items": int(dataset.catalog.size),
            "events": dataset.num_events}


def epoch(prepared: str, seconds: float) -> dict[str, Any]:
    """Pretraining steps on the memory-mapped dataset for at most ``seconds``."""
    import torch

    from uservec.training.batching import NextItemWindows, shuffled_batches
    from uservec.training.data.dataset import PreparedDataset
    from uservec.training.model import NextItemHead, NextItNet
    from uservec.training.objectives import next_item_loss

    torch.set_num_threads(1)
    torch.manual_seed(0)
    dataset = PreparedDataset.load(prepared, mmap=True)
    windows = NextItemWindows(dataset, MAX_LEN)
    model = NextItNet(dataset.vocab.size, DIM, (1, 2, 4, 8))
    head = NextItemHead(DIM, dataset.vocab.size)
    optimizer = torch.optim.Adam([*model.parameters(), *head.parameters()], lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    targets_done, steps, started = 0, 0, time.perf_counter()
    for index in shuffled_batches(len(windows), BATCH_SIZE, generator):
        inputs, targets = windows[index]
        loss = next_item_loss(model(inputs), targets, head, "sampled", 256, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        targets_done += int((targets != 0).sum())
        steps += 1
        if time.perf_counter() - started > seconds:
            break
    elapsed = time.perf_counter() - started
    rate = targets_done / elapsed
    return {"events_per_s": round(rate), "steps": steps, "seconds": round(elapsed, 1),
            "epoch_fraction": round(steps / math.ceil(len(windows) / BATCH_SIZE), 4),
            "epoch_seconds_projected": round(windows.num_targets() / rate),
            "peak_rss_mb": _peak_mb()}


def measure(events: int, folder: Path, epoch_seconds: float = EPOCH_SECONDS) -> dict[str, Any]:
    """Generate, prepare and train on one size; the generated files are removed afterwards."""
    path, out = folder / f"events-{events}.parquet", folder / f"prepared-{events}"
    made = _stage("generate", str(path), str(events))
    row: dict[str, Any] = {"events": made["events"], "generate_seconds": made["seconds"],
                           "file_mb": round(path.stat().st_size / 2**20, 1)}
    row["prepare"] = _stage("prepare", str(path), str(out), str(CHUNK_ROWS))
    row["epoch"] = _stage("epoch", str(out), str(epoch_seconds))
    path.unlink()
    subprocess.run(["rm", "-rf", str(out)], check=False)
    return row


def run_data_scale_bench(work: Path, quick: bool) -> dict[str, Any]:  # noqa: ARG001
    """The cost curve over :data:`SIZES` (``quick``: one tiny size); see module docstring."""
    folder = Path(tempfile.mkdtemp(prefix="uservec-data-scale-"))
    rows = []
    for events in QUICK_SIZES if quick else SIZES:
        logger.info("data scale: %d events in %s", events, folder)
        rows.append(measure(events, folder, 3.0 if quick else EPOCH_SECONDS))
    return summarise(rows)


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Rows plus the scaling checks: time per event vs the smallest size, RSS target."""
    first = rows[0]
    for row in rows:
        per_event = row["prepare"]["seconds"] / row["events"]
        row["prepare_seconds_per_event_vs_smallest"] = round(
            per_event / (first["prepare"]["seconds"] / first["events"]), 2)
    largest = rows[-1]
    return {"rows": rows, "chunk_rows": CHUNK_ROWS, "max_len": MAX_LEN, "batch_size": BATCH_SIZE,
            "dim": DIM, "epoch_seconds_budget": EPOCH_SECONDS, "rss_target_mb": RSS_TARGET_MB,
            "largest_events": largest["events"],
            "rss_target_met": max(largest["prepare"]["peak_rss_mb"],
                                  largest["epoch"]["peak_rss_mb"]) <= RSS_TARGET_MB}


def main(argv: list[str]) -> None:
    stage, *args = argv
    if stage == "generate":
        result = generate(args[0], int(args[1]))
    elif stage == "prepare":
        result = prepare(args[0], args[1], int(args[2]))
    elif stage == "epoch":
        result = epoch(args[0], float(args[1]))
    else:
        result = measure(int(stage), Path(tempfile.mkdtemp(prefix="uservec-data-scale-")))
    print(json.dumps(result))  # noqa: T201 (the stage's result, read by the parent)


if __name__ == "__main__":
    main(sys.argv[1:])
