"""Micro-batching: concurrent requests coalesce into one run and get the unbatched results."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from service_bundles import BOOKS, GAMES
from service_helpers import random_users, user

from uservec.service.batching import MicroBatcher, run_unbatched
from uservec.service.engine import load_bundle
from uservec.service.metrics import Metrics
from uservec.service.schemas import Event

pytestmark = pytest.mark.anyio


def ids_of(bundle, raws):
    return bundle.prepare(
        [Event(item_id=r, domain=GAMES if r.startswith("g") else BOOKS) for r in raws]).ids


async def test_concurrent_submissions_share_runs_up_to_the_batch_size(main_bundle, single_bundle):
    bundles = [load_bundle(main_bundle), load_bundle(single_bundle)]
    metrics = Metrics()
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(pool, metrics, max_batch_size=4, max_wait_s=0.2,
                               max_concurrent_runs=1)
        batcher.start()
        users = random_users(7, seed=2)
        jobs = [(bundles[i % 2], ids_of(bundles[i % 2], u)) for i, u in enumerate(users)]
        results = await asyncio.gather(*(batcher.submit(b, [ids]) for b, ids in jobs))
        await batcher.close()
    sizes = metrics.registry.get_sample_value
    # 7 rows, at most 4 per run, and rows of different bundles never share a run
    assert sizes("uservec_batch_size_sum") == 7
    assert 2 <= sizes("uservec_batch_size_count") < 7
    for (bundle, ids), (outputs, timing) in zip(jobs, results, strict=True):
        (expected,) = bundle.run([ids])
        for name, value in expected.items():
            np.testing.assert_allclose(outputs[0][name], value, rtol=1e-5, atol=1e-6)
        assert timing.encode_s > 0


async def test_concurrent_requests_coalesce_and_match_the_unbatched_service(
    serve, make_settings
):
    users = random_users(8, seed=9)
    bodies = [{"users": [user(*u)]} for u in users]
    async with serve(make_settings(batching_enabled=False)) as served:
        unbatched = [(await served.client.post("/embed", json=b)).json() for b in bodies]
        assert served.metric("uservec_batch_size_count") == 8
    async with serve(make_settings(max_batch_wait_ms=100, max_batch_size=64)) as served:
        responses = await asyncio.gather(*(served.client.post("/embed", json=b) for b in bodies))
        runs = served.metric("uservec_batch_size_count")
        assert served.metric("uservec_batch_size_sum") == 8
    assert runs < 8  # at least two requests shared one onnxruntime run
    for response, alone in zip(responses, unbatched, strict=True):
        np.testing.assert_allclose(response.json()["results"][0]["vector"],
                                   alone["results"][0]["vector"], rtol=1e-5, atol=1e-6)


async def test_close_finishes_a_batch_that_is_still_being_collected(main_bundle):
    """A row taken off the queue while the batch waits for more was neither queued nor
    running, so close() stopped the collector and the request never got an answer."""
    bundle = load_bundle(main_bundle)
    with ThreadPoolExecutor(1) as pool:
        batcher = MicroBatcher(pool, Metrics(), max_batch_size=8, max_wait_s=0.2,
                               max_concurrent_runs=1)
        batcher.start()
        ids = ids_of(bundle, ["b0", "g1"])
        pending = asyncio.ensure_future(batcher.submit(bundle, [ids]))
        await asyncio.sleep(0.02)  # the collector holds the row, waiting for more
        await batcher.close()
        outputs, _ = await asyncio.wait_for(pending, 5)
    (expected,) = bundle.run([ids])
    np.testing.assert_allclose(outputs[0]["user_vector"], expected["user_vector"], atol=1e-6)


@pytest.mark.parametrize("batched", [False, True])
async def test_waiting_for_a_busy_inference_thread_is_queue_not_encode(main_bundle, batched):
    """Timed around run_in_executor, a busy thread pool made the model look slow (and with
    batching off the queue stage was always 0)."""
    bundle = load_bundle(main_bundle)
    ids = ids_of(bundle, ["b0", "g1"])
    release = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        pool.submit(release.wait)  # the only inference thread is busy for 0.2 s
        asyncio.get_running_loop().call_later(0.2, release.set)
        if batched:
            batcher = MicroBatcher(pool, Metrics(), max_batch_size=8, max_wait_s=0.0,
                                   max_concurrent_runs=1)
            batcher.start()
            _, timing = await batcher.submit(bundle, [ids])
            await batcher.close()
        else:
            _, timing = await run_unbatched(pool, Metrics(), bundle, [ids], max_batch_size=8)
    assert timing.queue_s >= 0.2 > timing.encode_s > 0


async def test_a_lone_row_runs_at_once_without_waiting_for_company(main_bundle):
    bundle = load_bundle(main_bundle)
    metrics = Metrics()
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(pool, metrics, max_batch_size=8, max_wait_s=600.0,
                               max_concurrent_runs=2)
        batcher.start()
        # with nothing else in flight the 10-minute wait never starts
        outputs, _ = await asyncio.wait_for(batcher.submit(bundle, [ids_of(bundle, ["b0"])]), 60)
        await batcher.close()
    assert metrics.registry.get_sample_value("uservec_batch_size_count") == 1
    assert outputs[0]["user_vector"].shape == (bundle.manifest.model.dim,)


async def test_rows_that_arrive_while_a_run_is_in_flight_share_the_next_run(
    main_bundle, monkeypatch
):
    from uservec.service import batching

    bundle = load_bundle(main_bundle)
    release = threading.Event()
    timed_run = batching._timed_run

    def first_run_blocks(*args):
        release.wait(30)
        return timed_run(*args)

    monkeypatch.setattr(batching, "_timed_run", first_run_blocks)
    metrics = Metrics()
    with ThreadPoolExecutor(2) as pool:
        batcher = MicroBatcher(pool, metrics, max_batch_size=8, max_wait_s=0.5,
                               max_concurrent_runs=2)
        batcher.start()
        lone = asyncio.ensure_future(batcher.submit(bundle, [ids_of(bundle, ["b0"])]))
        await asyncio.sleep(0.05)  # the lone row is running (blocked in its thread)
        later = [asyncio.ensure_future(batcher.submit(bundle, [ids_of(bundle, [raw])]))
                 for raw in ("b2", "g1", "b4")]
        await asyncio.sleep(0.05)
        release.set()
        await asyncio.wait_for(asyncio.gather(lone, *later), 60)
        await batcher.close()
    sizes = metrics.registry.get_sample_value
    # the lone row ran at once; the three that came while it ran waited and shared one run
    assert (sizes("uservec_batch_size_count"), sizes("uservec_batch_size_sum")) == (2, 4)
