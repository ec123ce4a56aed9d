from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from uservec.bench.loadgen import Bodies, Spec, run

ITEMS = [("books", f"b{i}") for i in range(0, 40, 2)]


def spec(**fields: object) -> Spec:
    return Spec.from_json({"host": "127.0.0.1", "port": 1, "items": ITEMS, "length": 5,
                           **fields})


def test_bodies_are_deterministic_and_fresh_by_default() -> None:
    a, b = Bodies(spec(seed=1)), Bodies(spec(seed=1))
    assert [a.body(i) for i in range(5)] == [b.body(i) for i in range(5)]
    assert len({a.body(i)[1] for i in range(50)}) == 50
    assert Bodies(spec(seed=2)).body(0) != a.body(0)


def test_pairs_send_each_sequence_twice_in_a_row() -> None:
    bodies = Bodies(spec(pairs=True))
    sent = [bodies.body(i)[1] for i in range(6)]
    assert sent[0] == sent[1] and sent[2] == sent[3] and sent[0] != sent[2]
    users = json.loads(sent[0])["users"]
    assert len(users) == 1 and len(users[0]["events"]) == 5


def test_repeat_pool_reuses_sequences() -> None:
    bodies = Bodies(spec(repeat_pool=3, repeat_share=1.0))
    assert len({bodies.body(i)[1] for i in range(30)}) <= 3


def test_targets_rotate_with_their_fields() -> None:
    bodies = Bodies(spec(targets=[["/embed", {}], ["/recommend", {"k": 3}]]))
    (p0, b0), (p1, b1) = bodies.body(0), bodies.body(1)
    assert (p0, p1) == ("/embed", "/recommend")
    assert "k" not in json.loads(b0) and json.loads(b1)["k"] == 3


@asynccontextmanager
async def fake_server(replies: list[bytes]) -> AsyncIterator[int]:
    """Answers each request on a connection with the next canned reply."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for reply in replies:
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writer.write(reply)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        yield server.sockets[0].getsockname()[1]


@pytest.mark.anyio
async def test_run_counts_statuses_and_cache_hits_over_real_sockets() -> None:
    body = b'{"cached":true}'
    replies = [
        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nServer-Timing: total;dur=1.50\r\n\r\n%s"
        % (len(body), body),
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{}x\r\n0\r\n\r\n",
        b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}",
    ]
    async with fake_server(replies) as port:
        result = await run(Spec.from_json({"host": "127.0.0.1", "port": port, "items": ITEMS,
                                           "requests": 3, "length": 2, "timeline": True}))
    assert result["status"] == {"200": 2, "503": 1}
    assert result["failed"] == 1 and result["ok"] == 2
    assert result["cached_share"] == 0.5
    assert result["hit_server_ms"]["p50"] == 1.5
    assert len(result["timeline"]) == 3


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
