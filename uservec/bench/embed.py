"""Bulk embedding throughput: users/s and peak memory of ``uservec embed``, 1 vs N workers.

A synthetic event file (Parquet, users scattered over the whole file, about ``MEAN_EVENTS`` events a
user, items of the benchmark bundle's vocabulary with a few unknown ones) is generated at a few
sizes; each size is embedded with one worker using every core and with N single-threaded workers,
each run a fresh process, so that its peak memory is its own. Peak RSS is sampled over the whole
process tree (the parent and its workers together) and reported beside the largest single process.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from uservec.bench.common import bundle_items, rss_bytes

logger = logging.getLogger(__name__)

#: events per user on average (a user's count is Poisson: users are drawn per event)
MEAN_EVENTS = 20
#: rows generated and written at once
GENERATE_CHUNK = 500_000
#: how often the memory of a run is sampled
SAMPLE_S = 0.05

_RUN = """
import json, sys
from pathlib import Path
from uservec.embed import EmbedOptions, embed_file
args = json.loads(sys.argv[1])
options = EmbedOptions(workers=args["workers"], threads=args["threads"], progress=False,
                       chunk_rows=args["chunk_rows"], partition_rows=args["partition_rows"])
summary = embed_file(Path(args["bundle"]), Path(args["input"]), Path(args["out"]), options=options)
print(json.dumps(summary.to_dict()))
"""


def write_events(path: Path, n_events: int, items: list[tuple[str, str]], seed: int) -> int:
    """A Parquet event file of ``n_events`` rows in random user order; returns the user count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    n_users = max(1, n_events // MEAN_EVENTS)
    domains = np.array([d for d, _ in items] + ["books"], dtype=object)
    raws = np.array([i for _, i in items] + ["unknown"], dtype=object)
    schema = pa.schema([("user_id", pa.string()), ("item_id", pa.string()),
                        ("domain", pa.string()), ("timestamp", pa.int64())])
    with pq.ParquetWriter(path, schema) as writer:
        for start in range(0, n_events, GENERATE_CHUNK):
            n = min(GENERATE_CHUNK, n_events - start)
            users = rng.integers(0, n_users, size=n)
            # item popularity falls off like real catalogues; 1% of events are unknown items
            picks = (rng.zipf(1.3, size=n) - 1) % len(items)
            picks[rng.random(n) < 0.01] = len(items)
            writer.write_table(pa.table({
                "user_id": pa.array(np.char.add("u", users.astype(str)).astype(object)),
                "item_id": pa.array(raws[picks]),
                "domain": pa.array(domains[picks]),
                "timestamp": pa.array(rng.integers(1_600_000_000, 1_700_000_000, size=n)),
            }, schema=schema))
    return n_users


def _tree(pid: int) -> list[int]:
    """``pid`` and its descendants (Linux /proc; just ``pid`` elsewhere)."""
    found, frontier = [pid], [pid]
    while frontier:
        parent = frontier.pop()
        try:
            children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
        except OSError:
            continue
        found += [int(child) for child in children]
        frontier += [int(child) for child in children]
    return found


def measure(args: dict[str, Any]) -> dict[str, Any]:
    """Run one embedding in a fresh process; its summary plus sampled peak RSS (MB)."""
    process = subprocess.Popen([sys.executable, "-c", _RUN, json.dumps(args)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_total = peak_single = 0
    start = time.perf_counter()
    while process.poll() is None:
        sizes = [rss_bytes(pid) for pid in _tree(process.pid)]
        peak_total = max(peak_total, sum(sizes))
        peak_single = max(peak_single, max(sizes, default=0))
        time.sleep(SAMPLE_S)
    stdout, stderr = process.communicate()
    if process.returncode:
        raise RuntimeError(f"embed run failed ({process.returncode}): {stderr[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])
    return {**summary, "wall_s": time.perf_counter() - start,
            "peak_rss_mb": peak_total / 2**20, "peak_rss_largest_process_mb": peak_single / 2**20}


def run_embed_bench(bundle: Path, work: Path, quick: bool, seed: int,
                    workers: int | None = None) -> dict[str, Any]:
    """Users/s and peak RSS at a few file sizes, one worker (all cores) vs N (one thread each)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    many = workers or max(2, cores or 1)
    # the largest file spans several chunks and partitions: its peak memory shows the bound
    sizes = [4_000] if quick else [100_000, 1_000_000]
    chunk_rows = 1_000 if quick else 250_000
    partition_rows = 1_000 if quick else 250_000
    items = bundle_items(bundle)
    rows = []
    for n_events in sizes:
        source = work / f"events-{n_events}.parquet"
        n_users = write_events(source, n_events, items, seed)
        size_mb = source.stat().st_size / 2**20
        for n_workers in (1, many):
            logger.info("bench embed: %d events, %d worker(s)", n_events, n_workers)
            out = work / f"vectors-{n_events}-{n_workers}.parquet"
            result = measure({"bundle": str(bundle), "input": str(source), "out": str(out),
                              "workers": n_workers, "threads": 0, "chunk_rows": chunk_rows,
                              "partition_rows": partition_rows})
            out.unlink(missing_ok=True)
            rows.append({"events": n_events, "users": n_users, "input_mb": size_mb,
                         "workers": n_workers, **{k: result[k] for k in (
                             "users_per_s", "seconds", "spill_seconds", "embed_seconds",
                             "wall_s", "peak_rss_mb", "peak_rss_largest_process_mb",
                             "partitions", "max_rows_held")},
                         "threads_per_worker": max(1, (cores or 1) // n_workers)})
        source.unlink()
    for row in rows:
        single = next(r for r in rows if r["events"] == row["events"] and r["workers"] == 1)
        row["speedup_vs_1_worker"] = row["users_per_s"] / single["users_per_s"]
    return {"cores": cores, "workers_compared": [1, many], "mean_events_per_user": MEAN_EVENTS,
            "chunk_rows": chunk_rows, "partition_rows": partition_rows, "rows": rows}
