"""Running it: spill, then embed the partitions in this process or in worker processes, and
write ``OUT.partial`` renamed to ``OUT`` when complete."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from uservec.embed.model import load_model, output_schema
from uservec.embed.options import EmbedError, EmbedOptions, EmbedSummary, EventColumns
from uservec.embed.partition import Held, embed_partition
from uservec.embed.reading import resolve_columns
from uservec.embed.spill import SpillFile, partition_count, spill

logger = logging.getLogger(__name__)


def _threads(options: EmbedOptions) -> int:
    if options.threads:
        return options.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // options.workers)


def _worker(bundle: Path, options: EmbedOptions, tasks: Any, results: Any) -> None:
    """A worker process: embed the spill files it takes from ``tasks`` until it takes None."""
    held = Held()
    try:
        model = load_model(bundle, heads=options.heads, decision=options.decision,
                           threads=_threads(options), verify_checksums=False,
                           attributes=options.attributes)
        for part in iter(tasks.get, None):
            for batch in embed_partition(model, part, options, held):
                results.put(("batch", batch))
        results.put(("done", held.rows))
    except BaseException:  # the parent must hear of any failure, or it would wait forever
        results.put(("error", traceback.format_exc()))


def _run_workers(bundle: Path, options: EmbedOptions, parts: list[SpillFile],
                 write: Callable[[pa.RecordBatch], None]) -> int:
    """Share ``parts`` out to worker processes; the caller's ``write`` stores their batches."""
    context = mp.get_context("spawn")  # onnxruntime's thread pools do not survive a fork
    tasks = context.Queue()
    for part in parts:
        tasks.put(part)
    for _ in range(options.workers):
        tasks.put(None)
    results = context.Queue(maxsize=4 * options.workers)
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(bundle, options, tasks, results))
                 for _ in range(options.workers)]
    for process in processes:
        process.start()
    held, running = 0, len(processes)
    try:
        while running:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise EmbedError(f"a worker process died (exit code {dead[0].exitcode}); "
                                     "out of memory? try fewer --workers or a smaller "
                                     "--partition-rows") from None
                continue
            if kind == "batch":
                write(payload)
            elif kind == "done":
                held, running = max(held, payload), running - 1
            else:
                raise EmbedError(f"a worker failed:\n{payload}")
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    return held


def embed_file(bundle: Path, input_path: Path, out: Path, *, columns: EventColumns | None = None,
               options: EmbedOptions | None = None) -> EmbedSummary:
    """Embed every user of an event file into ``out`` (Parquet); see the module docstring.

    With ``workers`` > 1 the workers are spawned processes, which import the caller's main
    module again: call this from under ``if __name__ == "__main__":`` in a script.
    """
    columns = resolve_columns(Path(input_path), columns or EventColumns())
    options = options or EmbedOptions()
    bundle, input_path, out = Path(bundle), Path(input_path), Path(out)
    model = load_model(bundle, heads=options.heads, decision=options.decision,
                       threads=_threads(options), verify_checksums=options.verify_checksums,
                       attributes=options.attributes)
    if options.heads and not model.heads:
        logger.warning("--heads: bundle %s has no profile heads; writing vectors only", bundle)
    schema = output_schema(model, options.decision)
    partitions = partition_count(input_path, options.workers, options.partition_rows)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="uservec-embed-", dir=options.tmp_dir))
    users = 0
    try:
        start = time.perf_counter()
        parts, events, chunk_held = spill(input_path, columns, work, partitions, options.chunk_rows,
                              options.progress)
        spill_seconds = time.perf_counter() - start
        logger.info("embed: %d events in %d spill partitions (%.1f s)", events, len(parts),
                    spill_seconds)
        start = time.perf_counter()
        with pq.ParquetWriter(partial, schema) as writer, tqdm(
            unit=" users", unit_scale=True, desc="embedding", disable=not options.progress,
        ) as bar:
            def write(batch: pa.RecordBatch) -> None:
                nonlocal users
                writer.write_batch(batch)
                users += batch.num_rows
                bar.update(batch.num_rows)

            if options.workers == 1:
                held = Held()
                for part in parts:
                    for batch in embed_partition(model, part, options, held):
                        write(batch)
                partition_held = held.rows
            else:
                partition_held = _run_workers(bundle, options, parts, write)
        embed_seconds = time.perf_counter() - start
        partial.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        partial.unlink(missing_ok=True)
    summary = EmbedSummary(out, users, events, len(parts), options.workers, spill_seconds,
                           embed_seconds, max(chunk_held, partition_held))
    logger.info("embed: %d users in %.1f s (%.0f users/s) -> %s", users, summary.seconds,
                summary.users_per_s, out)
    return summary
