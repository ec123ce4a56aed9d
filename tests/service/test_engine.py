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
from uservec.service.engine import _default_domain, load_bundle
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
    raws = ["b0", "nope-early", *[f"b{2 * i}" for i in range(MAX_LEN - 2)], "g1", "nope"]
    prepared = bundle.prepare(events(*raws))
    assert prepared.events_used == MAX_LEN
    window = raws[-MAX_LEN:]
    assert prepared.ids.tolist() == bundle.vocab.encode(
        item_key(r, GAMES if r.startswith("g") else BOOKS) for r in window
    ).tolist()
    assert prepared.unknown_items == ("nope",)  # the early unknown id fell out of the window
    assert item_key("b0", BOOKS) in prepared.seen_keys  # exclusion sees the whole history


def test_prepare_orders_by_timestamp_when_every_event_has_one(bundle):
    timed = [Event(item_id="b2", domain=BOOKS, timestamp=20),
             Event(item_id="b4", domain=BOOKS, timestamp=10)]
    assert bundle.prepare(timed).ids.tolist() == bundle.prepare(events("b4", "b2")).ids.tolist()
    partly = [timed[0], Event(item_id="b4", domain=BOOKS)]
    assert bundle.prepare(partly).ids.tolist() == bundle.prepare(events("b2", "b4")).ids.tolist()


def test_events_without_a_domain_in_a_two_domain_bundle_are_unknown(bundle):
    # the test vocabulary has two domains: no domain means the "default" one, i.e. unknown
    prepared = bundle.prepare([Event(item_id="b0")])
    assert prepared.ids.tolist() == [UNK_ID]
    assert bundle.default_domain == "default"


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
