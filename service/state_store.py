"""Where per-user state lives: in process, or in Redis shared by every replica.

Each value starts with a 16-character token that changes on every write. An append reads the
value, computes the new one, and writes it only if the token is still the one it read
(compare-and-swap); otherwise another append won the race and this one starts again from the
newer value, so two concurrent appends for one user never lose an event. In Redis the check and
the write are one Lua script (one round trip, atomic on the server): an append costs two round
trips, the read and the swap.

Unlike the encoding cache, the state is the only copy of what a user appended: a Redis failure is
an error (503 ``state_unavailable``), not a miss.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from uservec.service.errors import ServiceError

TOKEN_SIZE = 16

#: KEYS[1] the user's key; ARGV[1] expected token ("" = absent), ARGV[2] new value, ARGV[3] TTL s
_SWAP = """
local current = redis.call('GET', KEYS[1])
local token = ''
if current then token = string.sub(current, 1, 16) end
if token ~= ARGV[1] then return 0 end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
return 1
"""


class StateUnavailable(ServiceError):
    code = "state_unavailable"


@dataclass(frozen=True)
class Stored:
    """A user's value as read: the token to swap against, and the payload after it."""

    token: str
    payload: bytes


def new_token() -> str:
    return os.urandom(TOKEN_SIZE // 2).hex()


def split(value: bytes) -> Stored:
    return Stored(value[:TOKEN_SIZE].decode("ascii"), value[TOKEN_SIZE:])


class StateStore(Protocol):
    name: str
    #: requests sent to the backing server (0 in process): the benchmark reports them per append
    round_trips: int

    async def load(self, user_id: str) -> Stored | None: ...

    async def swap(self, user_id: str, token: str | None, payload: bytes) -> bool: ...

    async def delete(self, user_id: str) -> bool: ...

    async def close(self) -> None: ...


class MemoryStore:
    """A dict in this process; only the event loop touches it, so no lock is needed (every
    method runs to completion between awaits)."""

    name = "memory"

    def __init__(self) -> None:
        self.round_trips = 0
        self._data: dict[str, bytes] = {}

    def __len__(self) -> int:
        return len(self._data)

    async def load(self, user_id: str) -> Stored | None:
        value = self._data.get(user_id)
        return None if value is None else split(value)

    async def swap(self, user_id: str, token: str | None, payload: bytes) -> bool:
        current = self._data.get(user_id)
        if (current[:TOKEN_SIZE].decode("ascii") if current else None) != token:
            return False
        self._data[user_id] = new_token().encode("ascii") + payload
        return True

    async def delete(self, user_id: str) -> bool:
        return self._data.pop(user_id, None) is not None

    async def close(self) -> None:
        return None


class RedisStore:
    """One key per user, ``<prefix>:user:<user_id>``, with an optional TTL refreshed by writes."""

    name = "redis"

    def __init__(self, url: str, *, prefix: str, ttl_s: int, timeout_s: float,
                 max_connections: int) -> None:
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.round_trips = 0
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=timeout_s,
            socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self.client = aioredis.Redis.from_pool(pool)
        self._swap = self.client.register_script(_SWAP)

    def key(self, user_id: str) -> str:
        return f"{self.prefix}:user:{user_id}"

    async def load(self, user_id: str) -> Stored | None:
        self.round_trips += 1
        try:
            value = await self.client.get(self.key(user_id))
        except RedisError as exc:
            raise StateUnavailable(f"user state store unavailable ({type(exc).__name__})") from exc
        if value is None:
            return None
        return split(value if isinstance(value, bytes) else value.encode())

    async def swap(self, user_id: str, token: str | None, payload: bytes) -> bool:
        self.round_trips += 1
        value = new_token().encode("ascii") + payload
        try:
            done = await self._swap(keys=[self.key(user_id)], args=[token or "", value, self.ttl_s])
        except RedisError as exc:
            raise StateUnavailable(f"user state store unavailable ({type(exc).__name__})") from exc
        return bool(done)

    async def delete(self, user_id: str) -> bool:
        self.round_trips += 1
        try:
            return bool(await self.client.delete(self.key(user_id)))
        except RedisError as exc:
            raise StateUnavailable(f"user state store unavailable ({type(exc).__name__})") from exc

    async def close(self) -> None:
        await self.client.aclose()
