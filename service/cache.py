"""Encoding cache: graph outputs of a user, keyed by bundle + the ids the model reads + output.

Each output has its own entry (:func:`output_key`): an endpoint computes only the outputs it
returns, and a later endpoint on the same sequence computes only what is not cached yet.

The key hashes the truncated id sequence, not the raw request: two requests the model cannot tell
apart (same latest ``max_len`` ids, unknown items included as UNK) share one entry. The bundle's
namespace (version + model checksum) is part of the key, so a reload never serves stale encodings.

Backends: an in-process LRU (default) or Redis. A Redis failure is a miss plus a counter and a
warning, never a failed request; after a failure Redis is skipped for ``retry_interval_s`` so an
outage does not add a timeout to every request, then the connection pool reconnects on its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from uservec.service.engine import Outputs
from uservec.service.metrics import Metrics

logger = logging.getLogger(__name__)


def cache_key(prefix: str, namespace: str, ids: np.ndarray) -> str:
    """``prefix:namespace:sha256(ids)``; ids are hashed as little-endian int64, order-sensitive."""
    digest = hashlib.sha256(np.ascontiguousarray(ids, dtype="<i8").tobytes()).hexdigest()
    return f"{prefix}:{namespace}:{digest}"


def output_key(base: str, output: str) -> str:
    """The key of one output of the user ``base`` (a :func:`cache_key`) names."""
    return f"{base}:{output}"


def serialize(outputs: Outputs) -> bytes:
    """Compact, safe (no pickle) encoding: a JSON header of names/dtypes/shapes, then raw bytes."""
    arrays = {name: np.ascontiguousarray(array) for name, array in outputs.items()}
    header = json.dumps(
        [[name, array.dtype.str, list(array.shape)] for name, array in arrays.items()]
    ).encode()
    return struct.pack("<I", len(header)) + header + b"".join(a.tobytes() for a in arrays.values())


def deserialize(blob: bytes) -> Outputs:
    (size,) = struct.unpack_from("<I", blob)
    offset = 4 + size
    outputs = {}
    for name, dtype, shape in json.loads(blob[4:offset]):
        array = np.frombuffer(blob, dtype=np.dtype(dtype), count=int(np.prod(shape)), offset=offset)
        outputs[name] = array.reshape(shape)
        offset += array.nbytes
    if offset != len(blob):
        raise ValueError(f"cache entry has {len(blob) - offset} trailing bytes")
    return outputs


class Cache(Protocol):
    name: str

    async def get_many(self, keys: Sequence[str]) -> list[Outputs | None]: ...

    async def set_many(self, items: dict[str, Outputs]) -> None: ...

    async def close(self) -> None: ...


class NullCache:
    """Caching switched off (``cache_size=0`` and no Redis)."""

    name = "none"

    async def get_many(self, keys: Sequence[str]) -> list[Outputs | None]:
        return [None] * len(keys)

    async def set_many(self, items: dict[str, Outputs]) -> None:
        return None

    async def close(self) -> None:
        return None


class LRUCache:
    """In-process LRU of at most ``max_entries`` encodings; used only from the event loop."""

    name = "memory"

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[str, Outputs] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    async def get_many(self, keys: Sequence[str]) -> list[Outputs | None]:
        found: list[Outputs | None] = []
        for key in keys:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            found.append(value)
        return found

    async def set_many(self, items: dict[str, Outputs]) -> None:
        for key, value in items.items():
            self._data[key] = value
            self._data.move_to_end(key)
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)

    async def close(self) -> None:
        self._data.clear()


class RedisCache:
    """Redis with a connection pool, a TTL per entry and short timeouts; failures are misses."""

    name = "redis"

    def __init__(
        self,
        url: str,
        metrics: Metrics,
        *,
        ttl_s: int,
        timeout_s: float,
        max_connections: int,
        retry_interval_s: float,
    ) -> None:
        self.ttl_s = ttl_s
        self.retry_interval_s = retry_interval_s
        self.metrics = metrics
        self._down_until = 0.0
        self._last_warning = 0.0
        # Blocking: with more requests in flight than connections, a request waits (up to the
        # timeout) for a connection to come back instead of failing; a plain pool raises at once,
        # and that error would mark a healthy Redis as down for everyone.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),  # a retry would double the latency of an outage
        )
        self.client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) the pool

    def _available(self) -> bool:
        return time.monotonic() >= self._down_until

    def _failed(self, operation: str, exc: Exception | None) -> None:
        self.metrics.cache_errors.labels(operation=operation).inc()
        if exc is None:
            return
        self._down_until = time.monotonic() + self.retry_interval_s
        now = time.monotonic()
        if now - self._last_warning >= 5.0:  # one warning per 5 s during an outage
            self._last_warning = now
            logger.warning(
                "redis cache %s failed (%s: %s); serving without cache, retrying in %.1fs",
                operation, type(exc).__name__, exc, self.retry_interval_s,
            )

    async def get_many(self, keys: Sequence[str]) -> list[Outputs | None]:
        if not keys:
            return []
        if not self._available():
            self._failed("get", None)
            return [None] * len(keys)
        try:
            blobs = await self.client.mget(list(keys))
        except (RedisError, OSError) as exc:
            self._failed("get", exc)
            return [None] * len(keys)
        found: list[Outputs | None] = []
        for blob in blobs:
            try:
                if blob is None:
                    found.append(None)
                elif isinstance(blob, str):  # only with decode_responses=True, never set here
                    raise TypeError("redis returned text for a binary cache entry")
                else:
                    found.append(deserialize(blob))
            except (ValueError, TypeError, struct.error) as exc:
                self._failed("decode", None)
                logger.warning("dropping an undecodable cache entry: %s", exc)
                found.append(None)
        return found

    async def set_many(self, items: dict[str, Outputs]) -> None:
        if not items:
            return
        if not self._available():
            self._failed("set", None)
            return
        try:
            async with self.client.pipeline(transaction=False) as pipe:
                for key, value in items.items():
                    pipe.set(key, serialize(value), ex=self.ttl_s)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            self._failed("set", exc)

    async def close(self) -> None:
        await self.client.aclose()
