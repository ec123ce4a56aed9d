"""Bundle loading and checking, sequence preparation, and the onnxruntime pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import faiss
import numpy as np
import pytest
from service_bundles import BOOKS, GAMES, MAX_LEN
from service_helpers import Reference, random_users

from uservec.contract.ids import UNK_ID, item_key
from uservec.contract.manifest import BundleError
from uservec.contract.vocab import Vocabulary
from uservec.service.engine import (
    DomainRequired,
    _default_domain,
    load_bundle,
    unambiguous_ids,
)
from uservec.service.schemas import Event


def events(*raws: str, **extra: object) -> list[Event]:
    return [Event(item_id=r, domain=GAMES if r.startswith("g") else BOOKS, **extra) for r in raws]


@pytest.fixture(scope="module")
def bundle(main_bundle: Path):
    return load_bundle(main_bundle)


def test_load_reads_every_head_and_namespaces_the_cache_by_version(bundle, reference):
    assert bundle.version == reference.version
    assert set(bundle.profile_heads) == {"gender", "age"}
    assert {h.domain for h in bundle.recommend_heads.values()} == {GAMES, BOOKS}
    assert bundle.profile_heads["age"].labels == tuple(f"a{i}" for i in range(7))
    assert bundle.cache_namespace.startswith(bundle.version + ":")
    # the games head reads books only: its source mask is the books domain
    reads = bundle.recommend_heads["games"].reads
    assert reads[bundle.vocab.id_of(item_key("b0", BOOKS))]
    assert not reads[bundle.vocab.id_of(item_key("g1", GAMES))]
    assert not reads[UNK_ID]


def test_prepare_keeps_the_latest_max_len_events_and_reports_unknown_ones(bundle):
    raws = ["b60", "nope-early", *[f"b{2 * i}" for i in range(MAX_LEN - 2)], "g1", "nope"]
    prepared = bundle.prepare(events(*raws))
    assert prepared.events_used == MAX_LEN
    window = raws[-MAX_LEN:]
    assert prepared.ids.tolist() == bundle.vocab.encode(
        item_key(r, GAMES if r.startswith("g") else BOOKS) for r in window
    ).tolist()
    assert prepared.unknown_items == ("nope",)  # the early unknown id fell out of the window
    # exclusion sees the whole history: b60 is only sent before the window
    assert "b60" not in window and item_key("b60", BOOKS) in prepared.seen_keys


def test_prepare_orders_by_timestamp_when_every_event_has_one(bundle):
    timed = [Event(item_id="b2", domain=BOOKS, timestamp=20),
             Event(item_id="b4", domain=BOOKS, timestamp=10)]
    assert bundle.prepare(timed).ids.tolist() == bundle.prepare(events("b4", "b2")).ids.tolist()
    partly = [timed[0], Event(item_id="b4", domain=BOOKS)]
    assert bundle.prepare(partly).ids.tolist() == bundle.prepare(events("b2", "b4")).ids.tolist()


def test_an_event_without_a_domain_resolves_when_its_id_is_in_exactly_one_domain(bundle):
    # the test vocabulary has two domains; b0 is only a book, g1 only a game
    prepared = bundle.prepare([Event(item_id="b0"), Event(item_id="g1")])
    assert prepared.ids.tolist() == bundle.prepare(events("b0", "g1")).ids.tolist()
    assert UNK_ID not in prepared.ids.tolist()
    assert item_key("g1", GAMES) in prepared.seen_keys


def test_an_event_without_a_domain_whose_id_is_in_no_domain_needs_one(bundle):
    with pytest.raises(DomainRequired) as caught:
        bundle.prepare([Event(item_id="b0"), Event(item_id="never-seen")])
    assert (caught.value.position, caught.value.item_id, caught.value.candidates) == (
        1, "never-seen", [])


def test_item_ids_in_several_domains_are_ambiguous_and_single_domain_vocabularies_need_none():
    vocab = Vocabulary((item_key("1", "movies"), item_key("1", "books"), item_key("2", "books")))
    assert unambiguous_ids(vocab) == ["2"]
    assert unambiguous_ids(Vocabulary((item_key("1", "movies"),))) == []


def test_an_id_in_several_domains_needs_its_domain(bundle):
    from dataclasses import replace

    # the test vocabulary plus "b0" as a game too: b0 alone no longer says which it is
    vocab = Vocabulary((*bundle.vocab.keys, item_key("b0", GAMES)))
    twin = replace(bundle, vocab=vocab)
    with pytest.raises(DomainRequired) as caught:
        twin.prepare([Event(item_id="b0")])
    assert caught.value.candidates == [BOOKS, GAMES]
    assert twin.prepare([Event(item_id="b2")]).known_events == 1


def test_events_without_a_domain_use_the_only_domain_of_a_single_domain_vocabulary():
    assert _default_domain(Vocabulary((item_key("1", "movies"), item_key("2", "movies")))) == (
        "movies")
    assert _default_domain(Vocabulary((item_key("1", "a"), item_key("2", "b")))) == "default"


def test_run_matches_onnxruntime_on_full_windows_whatever_the_batch_padding(bundle, reference):
    users = random_users(6, seed=3, max_len=12)
    prepared = [bundle.prepare(events(*u)) for u in users]
    outputs = bundle.run([p.ids for p in prepared])
    for raws, out in zip(users, outputs, strict=True):
        expected = reference.outputs(raws)
        assert set(out) == set(expected)
        for name, value in expected.items():
            np.testing.assert_allclose(out[name], value, rtol=1e-5, atol=1e-5)


def test_a_truncated_model_file_is_refused_with_the_checksum_reason(corrupt_bundle):
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(corrupt_bundle)


def test_without_checksums_onnxruntime_still_refuses_a_truncated_model(corrupt_bundle):
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        load_bundle(corrupt_bundle, verify_checksums=False)


def test_an_unsupported_schema_version_is_refused(main_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(main_bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["schema_version"] = 99
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="schema version 99 is not supported"):
        load_bundle(copy)


def test_an_index_that_does_not_fit_its_item_keys_is_refused(main_bundle, tmp_path):
    copy = tmp_path / "b"
    shutil.copytree(main_bundle, copy)
    small = faiss.IndexFlatIP(Reference(main_bundle).item_vectors("games")[0].shape[1])
    small.add(np.zeros((3, small.d), dtype=np.float32))
    faiss.write_index(small, str(copy / "index/games.faiss"))
    with pytest.raises(BundleError, match="index holds 3 vectors"):
        load_bundle(copy, verify_checksums=False)


def test_int8_requested_of_a_bundle_without_one_serves_fp32_and_says_so(main_bundle, caplog):
    with caplog.at_level("WARNING", logger="uservec.service.engine"):
        loaded = load_bundle(main_bundle, use_int8=True)
    assert loaded.model_file == "model.onnx"
    assert "no int8 model" in caplog.text


def test_a_recommend_head_reads_its_latest_source_events_from_the_whole_sequence(bundle):
    """Source events first, then the window: 10 books followed by 50 games still give the games
    head the latest MAX_LEN books (cutting the window first would leave it only games)."""
    books = ["nope-book", *[f"b{2 * i}" for i in range(10)]]
    games = [f"g{2 * (i % 31) + 1}" for i in range(50)] + ["nope-game"]
    sent = [*events(*books), *[Event(item_id=g, domain=GAMES) for g in games]]
    prepared = bundle.prepare(sent, bundle.recommend_heads["games"])
    assert prepared.ids.tolist() == bundle.vocab.encode(
        item_key(raw, BOOKS) for raw in books[-MAX_LEN:]).tolist()
    assert prepared.known_events == prepared.events_used == MAX_LEN
    # what the head could not read: unknown ids of its source domain only
    assert prepared.unknown_items == ("nope-book",)
    assert item_key("g1", GAMES) in prepared.seen_keys
    plain = bundle.prepare(sent)
    assert plain.known_events == MAX_LEN - 1 and plain.unknown_items == ("nope-game",)


def test_known_events_count_what_the_model_knows_in_the_window(bundle):
    assert bundle.prepare(events("nope", "b0", "g1")).known_events == 2
    assert bundle.prepare(events("nope", "never")).known_events == 0
    assert bundle.prepare([]).known_events == 0
