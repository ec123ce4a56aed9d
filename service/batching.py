"""Micro-batching: concurrent requests' sequences coalesce into one onnxruntime run.

Adaptive: a batch is whatever rows are queued when a run slot is free; only while another run is
in flight does it wait (at most ``max_wait_s`` after its first row, or until ``max_batch_size`` rows
are there) for more. A free run slot is taken *before* a batch is collected, so while every slot is
busy rows pile up and form a larger next batch: under load batches grow, and a lone request runs at
once. Rows carry
their bundle, so rows that straddle a hot reload run on the bundle their request started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np

from uservec.service.engine import Bundle, Outputs
from uservec.service.graphs import FULL, Plan
from uservec.service.metrics import Metrics

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunTiming:
    """Where a submission's time went: waiting (for its batch, then for an inference thread),
    and the model run itself."""

    queue_s: float = 0.0
    encode_s: float = 0.0


def _timed_run(
    bundle: Bundle, sequences: list[np.ndarray], plan: Plan
) -> tuple[list[Outputs], float, float]:
    """``bundle.run`` on an inference thread, with the moments it started and ended there.

    Timed inside the thread so that the wait for a free thread counts as queue, not encode:
    timed around ``run_in_executor`` a busy pool looked like a slow model.
    """
    started = time.perf_counter()
    outputs = bundle.run(sequences, plan)
    return outputs, started, time.perf_counter()


@dataclass(eq=False)
class _Row:
    bundle: Bundle
    plan: Plan
    ids: np.ndarray
    future: asyncio.Future[tuple[Outputs, RunTiming]]
    enqueued: float = field(default_factory=time.perf_counter)


async def run_unbatched(
    executor: Executor, metrics: Metrics, bundle: Bundle, sequences: Sequence[np.ndarray],
    max_batch_size: int, plan: Plan = (FULL,),
) -> tuple[list[Outputs], RunTiming]:
    """Batching switched off: one request's sequences in chunks of ``max_batch_size``."""
    loop = asyncio.get_running_loop()
    outputs: list[Outputs] = []
    queue_s = encode_s = 0.0
    for begin in range(0, len(sequences), max_batch_size):
        chunk = list(sequences[begin : begin + max_batch_size])
        metrics.batch_size.observe(len(chunk))
        submitted = time.perf_counter()
        result, started, ended = await loop.run_in_executor(executor, _timed_run, bundle, chunk,
                                                             plan)
        outputs.extend(result)
        queue_s += started - submitted
        encode_s += ended - started
    return outputs, RunTiming(queue_s=queue_s, encode_s=encode_s)


class MicroBatcher:
    """Collects rows from concurrent requests and runs them in batches."""

    def __init__(
        self,
        executor: Executor,
        metrics: Metrics,
        *,
        max_batch_size: int,
        max_wait_s: float,
        max_concurrent_runs: int,
    ) -> None:
        self.executor = executor
        self.metrics = metrics
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self._queue: asyncio.Queue[_Row] = asyncio.Queue()
        self._slots = asyncio.Semaphore(max_concurrent_runs)
        self._runs: set[asyncio.Task[None]] = set()
        self._worker: asyncio.Task[None] | None = None
        #: rows taken off the queue for the batch being collected (neither queued nor running:
        #: close() must wait for them too, or fail them, never drop them)
        self._collecting: list[_Row] = []

    def start(self) -> None:
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._collect(), name="uservec-batcher"
            )

    async def submit(
        self, bundle: Bundle, sequences: Sequence[np.ndarray], plan: Plan = (FULL,)
    ) -> tuple[list[Outputs], RunTiming]:
        """Outputs of each sequence, in order; the timing is the slowest row's."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("the micro-batcher is not running")
        loop = asyncio.get_running_loop()
        rows = [_Row(bundle, plan, ids, loop.create_future()) for ids in sequences]
        for row in rows:
            self._queue.put_nowait(row)
        results = await asyncio.gather(*(row.future for row in rows))
        timing = RunTiming(
            queue_s=max((t.queue_s for _, t in results), default=0.0),
            encode_s=max((t.encode_s for _, t in results), default=0.0),
        )
        return [outputs for outputs, _ in results], timing

    async def _next_batch(self) -> list[_Row]:
        """The rows of the next run: whatever is queued, and when another run is still going
        (so the rows could not run at once anyway) what arrives within ``max_wait_s``.

        With nothing in flight a lone request runs at once: waiting for company that is not
        coming only added ``max_wait_s`` to every request at concurrency 1.
        """
        batch = self._collecting = [await self._queue.get()]
        deadline = time.perf_counter() + self.max_wait_s
        while len(batch) < self.max_batch_size:
            if not self._queue.empty():
                batch.append(self._queue.get_nowait())
                continue
            remaining = deadline - time.perf_counter()
            if remaining <= 0 or not self._runs:
                break
            try:
                batch.append(await asyncio.wait_for(self._queue.get(), remaining))
            except TimeoutError:
                break
        self._collecting = []
        return batch

    async def _collect(self) -> None:
        while True:
            await self._slots.acquire()
            try:
                batch = await self._next_batch()
            except BaseException:
                self._slots.release()
                raise
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._runs.add(task)
            task.add_done_callback(self._runs.discard)

    async def _run(self, batch: list[_Row]) -> None:
        try:
            loop = asyncio.get_running_loop()
            groups: dict[tuple[int, Plan], list[_Row]] = {}
            for row in batch:
                groups.setdefault((id(row.bundle), row.plan), []).append(row)
            for rows in groups.values():
                self.metrics.batch_size.observe(len(rows))
                try:
                    outputs, start, end = await loop.run_in_executor(
                        self.executor, _timed_run, rows[0].bundle, [row.ids for row in rows],
                        rows[0].plan,
                    )
                except Exception as exc:
                    logger.exception("inference failed on a batch of %d rows", len(rows))
                    for row in rows:
                        if not row.future.done():
                            row.future.set_exception(exc)
                    continue
                for row, result in zip(rows, outputs, strict=True):
                    if not row.future.done():  # the request may have been cancelled
                        timing = RunTiming(queue_s=start - row.enqueued, encode_s=end - start)
                        row.future.set_result((result, timing))
        finally:
            self._slots.release()

    async def close(self, timeout_s: float = 10.0) -> None:
        """Let queued rows and running batches finish, then stop collecting."""
        deadline = time.perf_counter() + timeout_s
        while (not self._queue.empty() or self._collecting or self._runs) and (
            time.perf_counter() < deadline
        ):
            await asyncio.sleep(0.01)
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        leftover, self._collecting = self._collecting, []
        while not self._queue.empty():
            leftover.append(self._queue.get_nowait())
        for row in leftover:
            if not row.future.done():
                row.future.set_exception(RuntimeError("service is shutting down"))
