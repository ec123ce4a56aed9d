"""Everything one app serves with: the current bundle, cache, micro-batcher and thread pool.

Built by the lifespan and kept on ``app.state.runtime``. The bundle reference is swapped atomically
on reload; requests read it once and keep their copy, so in-flight requests finish on the old bundle
while new requests get the new one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from uservec.contract.manifest import BundleError
from uservec.service.batching import MicroBatcher, RunTiming, run_unbatched
from uservec.service.cache import Cache, LRUCache, NullCache, RedisCache, cache_key, output_key
from uservec.service.engine import USER_VECTOR, Bundle, Outputs, PreparedUser, load_bundle
from uservec.service.errors import BundleRejected, NotReady, ServiceError
from uservec.service.graphs import Plan
from uservec.service.metrics import Metrics, Timings
from uservec.service.settings import Settings
from uservec.service.state_store import MemoryStore, RedisStore, StateStore
from uservec.service.user_state import UserStates

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Encoded:
    """The outputs a request asked for, for one user, and whether all came from the cache."""

    outputs: Outputs
    cached: bool


@dataclass(frozen=True)
class ReloadResult:
    previous_version: str | None
    bundle: Bundle
    duration_s: float


def build_cache(settings: Settings, metrics: Metrics) -> Cache:
    if settings.redis_url:
        return RedisCache(
            settings.redis_url,
            metrics,
            ttl_s=settings.redis_ttl_s,
            timeout_s=settings.redis_timeout_s,
            max_connections=settings.redis_max_connections,
            retry_interval_s=settings.redis_retry_interval_s,
        )
    if settings.cache_size > 0:
        return LRUCache(settings.cache_size)
    return NullCache()


def build_state_store(settings: Settings) -> StateStore:
    """Redis when configured (shared by replicas), else this process's memory."""
    if settings.redis_url:
        return RedisStore(settings.redis_url, prefix=settings.cache_key_prefix,
                          ttl_s=settings.user_state_ttl_s, timeout_s=settings.redis_timeout_s,
                          max_connections=settings.redis_max_connections)
    return MemoryStore()


def load_configured(settings: Settings, path: Path) -> Bundle:
    """:func:`~service.engine.load_bundle` with the loading settings (checksums, int8, threads).

    The one place they are read: start-up (``service.server.serve``) and every reload load alike.
    The path is resolved once, first: a ``current`` symlink switched to another bundle while this
    one loads cannot mix the files of two bundles.
    """
    return load_bundle(
        Path(path).resolve(),
        verify_checksums=settings.verify_checksums,
        use_int8=settings.use_int8,
        intra_op_threads=settings.ort_intra_op_threads,
    )


class Runtime:
    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.executor = ThreadPoolExecutor(
            settings.inference_threads, thread_name_prefix="uservec-infer"
        )
        self.cache = build_cache(settings, metrics)
        self.users = UserStates(build_state_store(settings))
        self.batcher: MicroBatcher | None = None
        if settings.batching_enabled:
            self.batcher = MicroBatcher(
                self.executor,
                metrics,
                max_batch_size=settings.max_batch_size,
                max_wait_s=settings.max_batch_wait_ms / 1000,
                max_concurrent_runs=settings.inference_threads,
            )
        self.bundle_path: Path | None = settings.bundle_path
        self._bundle: Bundle | None = None
        self._reload_lock = asyncio.Lock()
        self.shutting_down = False
        #: tasks started outside a request (SIGHUP reloads), kept referenced until done
        self.background: set[asyncio.Task[None]] = set()

    # --- lifecycle
    async def start(self, preloaded: Bundle | None = None) -> None:
        """Start the batcher and load the configured bundle (a bad bundle fails startup).

        ``preloaded`` is a bundle the caller already loaded and checked (``service.server.serve``
        loads it before uvicorn starts, so a corrupt bundle fails there with its message, not in
        uvicorn's startup traceback).
        """
        if self.batcher is not None:
            self.batcher.start()
        configured = self.bundle_path
        if preloaded is None and configured is not None:
            preloaded = await asyncio.to_thread(load_configured, self.settings, configured)
        if preloaded is not None:
            # the configured path (a symlink stays one) when it is where the bundle came from
            same = configured is not None and configured.resolve() == preloaded.path
            self._swap_in(preloaded, configured if same else None)  # start-up: not a reload

    async def close(self) -> None:
        self.shutting_down = True
        if self.batcher is not None:
            await self.batcher.close()
        await self.cache.close()
        await self.users.store.close()
        self.executor.shutdown(wait=True, cancel_futures=False)

    @property
    def ready(self) -> bool:
        return self._bundle is not None and not self.shutting_down

    @property
    def current(self) -> Bundle | None:
        return self._bundle

    @property
    def bundle(self) -> Bundle:
        """The bundle a new request uses; 503 ``not_ready`` before one is loaded."""
        if self._bundle is None:
            raise NotReady("no bundle is loaded yet", details={"reason": "no_bundle"})
        return self._bundle

    async def reload(self, path: str | Path | None = None) -> ReloadResult:
        """Load, check and swap in a bundle; on any problem the current bundle keeps serving."""
        target = Path(path) if path is not None else self.bundle_path
        if target is None:
            raise BundleRejected("no bundle path given and none configured")
        if self._reload_lock.locked():
            raise ServiceError("another reload is in progress", code="reload_in_progress")
        async with self._reload_lock:
            start = time.perf_counter()
            try:
                # its own thread, not the inference pool: hashing and loading a bundle takes
                # seconds, and the micro-batcher's slots are sized to the pool's threads
                bundle = await asyncio.to_thread(load_configured, self.settings, target)
            except Exception as exc:  # whatever fails while loading, the bundle is refused
                self.metrics.reloads.labels(result="rejected").inc()
                if isinstance(exc, BundleError):
                    logger.error("bundle %s refused: %s", target, exc)
                else:
                    logger.exception("bundle %s refused: unexpected error while loading", target)
                current = self._bundle.version if self._bundle else None
                raise BundleRejected(
                    f"bundle refused: {exc}",
                    details={"bundle_path": str(target), "serving": current},
                ) from exc
            previous = self._swap_in(bundle, target)
            self.metrics.reloads.labels(result="ok").inc()
            return ReloadResult(previous, bundle, time.perf_counter() - start)

    def _swap_in(self, bundle: Bundle, path: Path | None) -> str | None:
        """Make ``bundle`` the one new requests use; returns the version it replaced.

        ``path`` is what the next reload without a path reads again: the path as given (a
        ``current`` symlink stays a symlink, so SIGHUP follows it), not the folder it resolved to.
        """
        previous = self._bundle.version if self._bundle else None
        self._bundle, self.bundle_path = bundle, path or bundle.path
        self.metrics.set_bundle(bundle.version, bundle.manifest.schema_version, bundle.model_file)
        logger.info("serving bundle %s (was %s)", bundle.version, previous)
        return previous

    # --- work
    async def in_thread(self, fn: Callable[..., T], *args: object, **kwargs: object) -> T:
        """Run blocking work (onnxruntime, FAISS, file I/O) in the pool, off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    async def encode(
        self, bundle: Bundle, users: Sequence[PreparedUser], timings: Timings,
        outputs: Sequence[str] = (USER_VECTOR,),
    ) -> list[Encoded]:
        """``outputs`` per user: cache first, then one (micro-batched) run of the graphs that
        compute what is missing (:meth:`Bundle.plan`).

        The cache holds each output of a user under its own key, so ``/recommend`` after
        ``/embed`` of the same sequence computes only the task's pass; every output a run
        produced is stored, asked for or not.
        """
        if any(u.outputs is not None for u in users):  # stored users: no cache, no model
            rest = iter(await self.encode(bundle, [u for u in users if u.outputs is None],
                                          timings, outputs))
            return [Encoded({name: u.outputs[name] for name in outputs}, cached=False)
                    if u.outputs is not None else next(rest) for u in users]
        if not users:
            return []
        bases = [cache_key(self.settings.cache_key_prefix, bundle.cache_namespace, u.model_input)
                 for u in users]
        keys = list(dict.fromkeys(output_key(base, name) for base in bases for name in outputs))
        start = time.perf_counter()
        found = dict(zip(keys, await self.cache.get_many(keys), strict=True))
        timings.add("cache", time.perf_counter() - start)
        complete = {base: all(found[output_key(base, name)] is not None for name in outputs)
                    for base in bases}
        hits = sum(complete[base] for base in bases)
        self.metrics.cache_lookups.labels(backend=self.cache.name, result="hit").inc(hits)
        self.metrics.cache_lookups.labels(backend=self.cache.name, result="miss").inc(
            len(bases) - hits
        )
        missing = [base for base in dict.fromkeys(bases) if not complete[base]]
        if missing:
            await self._compute(bundle, users, bases, missing, outputs, found, timings)
        fresh = set(missing)
        return [Encoded({name: _value(found, base, name) for name in outputs},
                        cached=base not in fresh) for base in bases]

    async def _compute(
        self, bundle: Bundle, users: Sequence[PreparedUser], bases: list[str],
        missing: list[str], outputs: Sequence[str], found: dict[str, Outputs | None],
        timings: Timings,
    ) -> None:
        """Run the plan for what ``missing`` users lack; store every output it produced."""
        lacking = {name for base in missing for name in outputs
                   if found[output_key(base, name)] is None}
        plan = bundle.plan(lacking)
        ids_of = dict(zip(bases, (u.model_input for u in users), strict=True))
        computed, timing = await self._infer(bundle, [ids_of[base] for base in missing], plan)
        timings.add("queue", timing.queue_s)
        timings.add("encode", timing.encode_s)
        fresh = {output_key(base, name): {name: value}
                 for base, row in zip(missing, computed, strict=True)
                 for name, value in row.items()}
        start = time.perf_counter()
        await self.cache.set_many(fresh)
        timings.add("cache", time.perf_counter() - start)
        found.update(fresh)

    async def _infer(
        self, bundle: Bundle, sequences: list[np.ndarray], plan: Plan
    ) -> tuple[list[Outputs], RunTiming]:
        if self.batcher is not None:
            return await self.batcher.submit(bundle, sequences, plan)
        return await run_unbatched(
            self.executor, self.metrics, bundle, sequences, self.settings.max_batch_size, plan
        )


def _value(found: dict[str, Outputs | None], base: str, name: str) -> np.ndarray:
    value = found[output_key(base, name)]
    assert value is not None  # every miss was computed
    return value[name]
