"""``uservec embed``: the service's numbers for a whole event file, in bounded memory.

The tiny session bundle (tests/conftest.py) is embedded from files whose users are scattered over
many chunks, and the same users are sent to the real app (create_app with its lifespan) through
``POST /embed`` and ``POST /predict-profile``.
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from tiny_export import MAX_LEN, SOURCE, TARGET

from uservec.cli import main
from uservec.contract.events import default_domain, encode_events
from uservec.contract.vocab import Vocabulary
from uservec.embed import EmbedError, EmbedOptions, EventColumns, embed_file
from uservec.embed import run as embed_run
from uservec.service.app import create_app
from uservec.service.engine import Bundle, DomainRequired
from uservec.service.schemas import Event
from uservec.service.settings import Settings

#: (user_id, item_id, domain or None, timestamp) in file order
Row = tuple[str, str, str | None, int]


def make_rows(n_users: int, seed: int = 0) -> list[Row]:
    """Events of ``n_users`` users shuffled over the file, with everything the encoding must get
    right: timestamp ties (few distinct values), the same raw id in both domains, unknown ids,
    events without a domain, users longer than the model's window."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for user in range(n_users):
        for _ in range(int(rng.integers(1, 3 * MAX_LEN))):
            roll = rng.random()
            item = f"x{rng.integers(5)}" if roll < 0.05 else str(rng.integers(0, 62))
            domain = None if roll > 0.95 else (SOURCE if rng.random() < 0.5 else TARGET)
            rows.append((f"user-{user}", item, domain, int(rng.integers(0, 6))))
    rng.shuffle(rows)  # type: ignore[arg-type]
    return rows


def write_csv(rows: list[Row], path: Path, header: tuple[str, ...] = ("user_id", "item_id",
                                                                        "domain", "timestamp")
              ) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([(u, i, d or "", t) for u, i, d, t in rows])
    return path


def by_user(rows: list[Row]) -> dict[str, list[Row]]:
    users: dict[str, list[Row]] = {}
    for row in rows:
        users.setdefault(row[0], []).append(row)
    return users


def request_users(rows: list[Row]) -> list[dict[str, Any]]:
    """Each user's events as a request body sends them: in file order, with their timestamps."""
    return [
        {"user_id": user, "events": [
            {"item_id": item, "timestamp": stamp, **({"domain": domain} if domain else {})}
            for _, item, domain, stamp in events]}
        for user, events in by_user(rows).items()
    ]


@asynccontextmanager
async def service(bundle: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The real app with its lifespan (bundle loaded and checked), no cache."""
    app = create_app(Settings(bundle_path=bundle, reload_on_sighup=False, cache_size=0,
                              ort_intra_op_threads=1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://svc") as client:
            yield client


async def post_all(bundle: Path, path: str, users: list[dict[str, Any]],
                   **extra: Any) -> dict[str, dict[str, Any]]:
    """Results of every user from the service, 64 per request (the default request limit)."""
    results = {}
    async with service(bundle) as client:
        for start in range(0, len(users), 64):
            response = await client.post(path, json={"users": users[start:start + 64], **extra})
            assert response.status_code == 200, response.text
            results |= {r["user_id"]: r for r in response.json()["results"]}
    return results


def read_rows(path: Path) -> dict[str, dict[str, Any]]:
    rows = pq.read_table(path).to_pylist()
    assert len({row["user_id"] for row in rows}) == len(rows)  # one row per user
    return {row["user_id"]: row for row in rows}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


QUIET = EmbedOptions(progress=False, threads=1)


@pytest.mark.anyio
async def test_vectors_equal_post_embed_for_the_same_events(bundle_dir, tmp_path):
    rows = make_rows(40, seed=1)
    source = write_csv(rows, tmp_path / "events.csv")
    options = EmbedOptions(progress=False, threads=1, chunk_rows=50, batch_size=16)
    embed_file(bundle_dir, source, tmp_path / "vectors.parquet", options=options)
    embedded = read_rows(tmp_path / "vectors.parquet")
    served = await post_all(bundle_dir, "/embed", request_users(rows))
    assert set(embedded) == set(served)
    worst = max(float(np.abs(np.asarray(embedded[u]["vector"]) - served[u]["vector"]).max())
                for u in served)
    assert worst <= 1e-5
    assert all(embedded[u]["events_used"] == served[u]["events_used"] for u in served)
    assert any(r["events_used"] == MAX_LEN for r in served.values())  # windows were cut


@pytest.mark.anyio
async def test_heads_equal_predict_profile(bundle_dir, tmp_path):
    rows = make_rows(30, seed=2)
    source = write_csv(rows, tmp_path / "events.csv")
    users = request_users(rows)
    # the tiny bundle's age head has no label prior: prior_adjusted is asked of gender only
    for decision, names in (("as_trained", ["gender", "age"]), ("prior_adjusted", ["gender"])):
        out = tmp_path / f"{decision}.parquet"
        result = CliRunner().invoke(main, [
            "embed", "--bundle", str(bundle_dir), "--input", str(source), "--out", str(out),
            "--heads", "--decision", decision, "--chunk-rows", "64", "--threads", "1",
            *(f"--attribute={name}" for name in names)])
        assert result.exit_code == 0, result.output
        assert "30 users" in result.output
        embedded = read_rows(out)
        metadata = pq.read_schema(out).metadata
        labels = {name: json.loads(metadata[f"uservec.labels.{name}".encode()])
                  for name in names}
        served = await post_all(bundle_dir, "/predict-profile", users, decision=decision,
                                attributes=names)
        for user, answer in served.items():
            for name, prediction in answer["attributes"].items():
                assert embedded[user][f"{name}_label"] == prediction["label"]
                expected = [prediction["probabilities"][label] for label in labels[name]]
                np.testing.assert_allclose(embedded[user][f"{name}_probabilities"], expected,
                                           atol=1e-5)


@pytest.mark.parametrize("first_pass", ["estimated", "one partition"])
def test_a_file_larger_than_a_chunk_and_a_partition_stays_bounded(bundle_dir, tmp_path,
                                                                  monkeypatch, first_pass):
    rows = make_rows(120, seed=3)
    # one user's events at the very first and the very last row: chunks and partitions apart
    rows = [("split-user", "4", TARGET, 1), *rows, ("split-user", "6", TARGET, 0)]
    source = write_csv(rows, tmp_path / "events.csv")
    if first_pass == "one partition":  # a size estimate far too low: split again when embedding
        monkeypatch.setattr(embed_run, "partition_count", lambda *args: 1)
    small = EmbedOptions(progress=False, threads=1, chunk_rows=64, partition_rows=150)
    summary = embed_file(bundle_dir, source, tmp_path / "small.parquet", options=small)
    assert summary.events == len(rows) > 8 * 150
    assert summary.max_rows_held <= 150
    monkeypatch.undo()
    whole = EmbedOptions(progress=False, threads=1, chunk_rows=10**6, partition_rows=10**6)
    reference = embed_file(bundle_dir, source, tmp_path / "whole.parquet", options=whole)
    assert reference.max_rows_held == len(rows) and reference.partitions == 1
    bounded = read_rows(tmp_path / "small.parquet")
    unbounded = read_rows(tmp_path / "whole.parquet")
    assert set(bounded) == set(unbounded) == set(by_user(rows))
    assert bounded["split-user"]["events_used"] == 2
    for user, row in unbounded.items():
        np.testing.assert_allclose(bounded[user]["vector"], row["vector"], atol=1e-6)


def test_two_workers_write_the_same_rows_as_one(bundle_dir, tmp_path):
    source = write_csv(make_rows(60, seed=4), tmp_path / "events.csv")
    one = embed_file(bundle_dir, source, tmp_path / "one.parquet", options=EmbedOptions(
        progress=False, threads=1, partition_rows=100))
    two = embed_file(bundle_dir, source, tmp_path / "two.parquet", options=EmbedOptions(
        progress=False, threads=1, partition_rows=100, workers=2))
    assert one.users == two.users == 60 and two.partitions >= 8  # shared out, 4 per worker
    assert read_rows(tmp_path / "one.parquet") == read_rows(tmp_path / "two.parquet")


def test_parquet_with_typed_columns_and_own_names_equals_the_csv(bundle_dir, tmp_path):
    rows = make_rows(20, seed=5)
    rows = [(u, i, d, t) for u, i, d, t in rows if not i.startswith("x")]  # integer item ids
    write_csv(rows, tmp_path / "events.csv")
    table = pa.table({
        "member": [u for u, *_ in rows],
        "item": pa.array([float(i) for _, i, _, _ in rows]),  # "12.0" must still be item "12"
        "shelf": [d for _, _, d, _ in rows],
        "when": pa.array([f"1970-01-01T00:00:0{t}Z" for *_, t in rows]),
    })
    pq.write_table(table, tmp_path / "events.parquet")
    embed_file(bundle_dir, tmp_path / "events.csv", tmp_path / "csv.parquet", options=QUIET)
    embed_file(bundle_dir, tmp_path / "events.parquet", tmp_path / "pq.parquet", options=QUIET,
               columns=EventColumns("member", "item", "when", "shelf"))
    assert read_rows(tmp_path / "csv.parquet") == read_rows(tmp_path / "pq.parquet")


@pytest.mark.parametrize(("lines", "message"), [
    (["user_id,item_id", "u,1"], "missing column(s) ['timestamp']"),
    (["user_id,item_id,timestamp", "u,1,5", "u,2,yesterday"], "data row 2: unparsable timestamp"),
    (["user_id,item_id,timestamp", "u,1,5", ",2,6"], "data row 2: missing value in column "
                                                     "'user_id'"),
    (["user_id,item_id,timestamp", "u,1,5.5"], "not a whole number of seconds"),
    (["user_id,item_id,timestamp,domain", "u,1,5,a:b"], "must not contain ':'"),
    (["user_id,item_id,timestamp"], "no events"),
])
def test_bad_input_is_one_line_naming_the_row(bundle_dir, tmp_path, lines, message):
    source = tmp_path / "events.csv"
    source.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out.parquet"
    result = CliRunner().invoke(main, ["embed", "--bundle", str(bundle_dir), "--input",
                                       str(source), "--out", str(out)])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert not out.exists() and not (tmp_path / "out.parquet.partial").exists()


def test_an_existing_output_is_kept_unless_overwrite(bundle_dir, tmp_path):
    source = write_csv(make_rows(3), tmp_path / "events.csv")
    out = tmp_path / "out.parquet"
    out.write_text("keep me")
    args = ["embed", "--bundle", str(bundle_dir), "--input", str(source), "--out", str(out)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1 and "--overwrite" in refused.output
    assert out.read_text() == "keep me"
    assert CliRunner().invoke(main, [*args, "--overwrite"]).exit_code == 0
    assert len(read_rows(out)) == 3


def test_prior_adjusted_needs_a_prior_on_every_head(bundle_dir, tmp_path):
    source = write_csv(make_rows(3), tmp_path / "events.csv")
    with pytest.raises(EmbedError, match="prior"):
        # the tiny bundle's age head carries no label prior
        embed_file(bundle_dir, source, tmp_path / "out.parquet",
                   options=EmbedOptions(heads=True, decision="prior_adjusted", progress=False))


# --- the contract function is the service's rule: Bundle.prepare gives the same answer
events = st.lists(st.tuples(
    st.sampled_from(["0", "1", "2", "3", "x"]),
    st.sampled_from([SOURCE, TARGET, None, ""]),
    st.one_of(st.none(), st.integers(0, 3)),
), max_size=12)


@settings(max_examples=200, deadline=None)
@given(events, st.sampled_from([0, 1, 3, MAX_LEN]))
def test_encode_events_is_what_the_service_prepares(vocab: Vocabulary, user_events, max_len):
    domains = tuple(vocab.domains()) if len(vocab.domains()) > 1 else ()
    stub = SimpleNamespace(vocab=vocab, max_len=max_len, default_domain=default_domain(vocab),
                           domains=domains, bag_size=0)
    stub.domain_of = lambda event, position: Bundle.domain_of(stub, event, position)  # type: ignore[arg-type]
    request = [Event(item_id=i, domain=d or None, timestamp=t) for i, d, t in user_events]
    try:
        prepared = Bundle.prepare(stub, request)  # type: ignore[arg-type]
    except DomainRequired:
        assume(False)  # the service refuses the request: there is no served answer to match
    encoded = encode_events([i for i, _, _ in user_events], [d for _, d, _ in user_events],
                            [t for _, _, t in user_events], vocab, max_len, domains)
    assert encoded.ids.tolist() == prepared.ids.tolist()
    assert encoded.unknown_items == prepared.unknown_items
    assert encoded.seen_keys == prepared.seen_keys
