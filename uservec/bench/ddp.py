"""Data-parallel pretraining throughput: events/s with 1 and N processes (``uservec run --nproc``).

Each point is a real ``uservec run`` of a generated dataset (pretraining only, no tasks) under
torchrun with one torch thread per process; events/s = training targets / seconds of the training
passes of rank 0 (validation excluded). Same global batch at every process count, so the runs do
the same work; the ratio to one process is taken within this run.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from uservec.launch import torchrun_command
from uservec.training.batching import NextItemWindows
from uservec.training.run_dir import RunDir

logger = logging.getLogger(__name__)

CONFIG = """
name = "ddp-bench"
[data]
format = "synthetic"
synthetic_users = {users}
synthetic_items = 1000
[model]
dim = 64
dilations = [1, 2, 4, 8]
max_len = 32
dropout = 0.0
[pretrain]
epochs = {epochs}
batch_size = 64
"""


def _one(nproc: int, config: Path, out: Path) -> dict[str, Any]:
    started = time.perf_counter()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(torchrun_command(nproc, [str(config), "--out", str(out), "--fresh"]),
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{nproc} processes failed: {done.stderr[-2000:]}")
    history = json.loads((out / "report.json").read_text())["pretrain"]["history"]
    windows = NextItemWindows(RunDir(out).load_dataset(), 32)
    per_window = windows.num_targets() / len(windows)
    seq_per_s = sum(e["sequences_per_s"] for e in history) / len(history)
    return {"processes": nproc, "events_per_s": round(seq_per_s * per_window),
            "sequences_per_s": round(seq_per_s), "losses": [e["loss"] for e in history],
            "wall_seconds": round(time.perf_counter() - started, 1)}


def run_ddp_bench(work: Path, quick: bool) -> dict[str, Any]:
    """Rows for 1 and 2 processes; ``speedup`` is events/s over one process's."""
    users, epochs = (150, 1) if quick else (4000, 2)
    config = work / "ddp-bench.toml"
    config.write_text(CONFIG.format(users=users, epochs=epochs))
    rows = [_one(n, config, work / f"ddp-{n}") for n in (1, 2)]
    for row in rows:
        row["speedup"] = round(row["events_per_s"] / rows[0]["events_per_s"], 2)
    gap = max(abs(a - b) / abs(a) for a, b in zip(rows[0]["losses"], rows[1]["losses"],
                                                 strict=True))
    return {"rows": rows, "users": users, "epochs": epochs, "cores": os.cpu_count(),
            "max_relative_loss_gap": gap, "backend": "gloo (CPU)"}
