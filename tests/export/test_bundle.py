import json
import re
from dataclasses import replace

import faiss
import numpy as np
import onnxruntime as ort
import pytest
import torch
from tiny_export import MAX_LEN, make_items

from uservec.contract.fingerprint import sha256_file
from uservec.contract.manifest import SCHEMA_VERSION, manifest_digest, read_manifest
from uservec.contract.vocab import Vocabulary
from uservec.export import ExportError, bundle
from uservec.export.bundle import write_bundle
from uservec.export.parity import ParityError, torch_outputs
from uservec.service.engine import load_bundle


def test_bundle_has_the_documented_layout(bundle_dir):
    files = sorted(
        p.relative_to(bundle_dir).as_posix() for p in bundle_dir.rglob("*") if p.is_file()
    )
    graphs = [f"graphs/{name}{suffix}.onnx" for name in ("profile.age", "profile.gender",
                                                         "query.games", "user_vector")
              for suffix in (".int8", "")]
    assert files == [
        *graphs,
        "index/games.faiss",
        "items/games.json",
        "items/games.npy",
        "manifest.json",
        "model.int8.onnx",
        "model.onnx",
        "model.step.onnx",
        "popularity/games.json",
        "vocab.json",
    ]
    assert not list(bundle_dir.parent.glob(".tiny.tmp-*"))  # the temp dir was renamed, not left


def test_manifest_records_provenance_checksums_and_parity(bundle_dir):
    manifest = read_manifest(bundle_dir)
    assert manifest.schema_version == SCHEMA_VERSION
    assert re.fullmatch(r"tiny-\d{8}T\d{6}Z-[0-9a-f]{8}", manifest.bundle_version)
    assert manifest.data_fingerprint == "data-fp" and manifest.seed == 0
    assert manifest.config["model"] == {"dim": 16} and manifest.code_version
    assert (
        manifest.files == {rel: sha256_file(bundle_dir / rel) for rel in manifest.files}
        and "manifest.json" not in manifest.files
    )
    assert manifest.manifest_sha256 == manifest_digest(manifest)
    assert max(manifest.parity["fp32"]["max_abs_diff"].values()) <= 1e-4
    assert manifest.parity["int8"]["method"] == "static" and manifest.parity["int8"]["accepted"]
    assert manifest.model.int8_file == "model.int8.onnx" and manifest.model.int8_method == "static"
    assert [t.name for t in manifest.model.outputs] == [
        "user_vector",
        "profile.gender",
        "profile.age",
        "query.games",
    ]
    gender, age = manifest.tasks[:2]
    assert (gender.class_prior, gender.prior_power) == ([0.4, 0.6], 1.0)
    assert (age.class_prior, age.prior_power) == (None, None)


def test_item_files_line_up_with_the_head(bundle_dir, fused, vocab):
    manifest = read_manifest(bundle_dir)
    games = next(t for t in manifest.tasks if t.name == "games")
    keys = json.loads((bundle_dir / games.item_keys_file).read_text())
    vectors = np.load(bundle_dir / games.items_file)
    assert keys == [k for k in vocab.keys if k.startswith("games::")]
    np.testing.assert_array_equal(vectors, fused.item_vectors("games").detach().numpy())
    assert faiss.read_index(str(bundle_dir / games.index_file)).ntotal == len(keys)
    assert json.loads((bundle_dir / games.popularity_file).read_text()) == keys[::-1]
    assert Vocabulary.load(bundle_dir / "vocab.json").keys == vocab.keys
    assert games.source_domains == ["books"] and games.index_kind == "flat"


def test_one_session_run_serves_every_head(bundle_dir, fused):
    """The service's one-call rule: a single run of the single-input graph gives every head."""
    session = ort.InferenceSession(
        str(bundle_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    assert [i.name for i in session.get_inputs()] == ["items"]
    items = make_items(5, seed=9)
    outputs = dict(zip(fused.output_names, session.run(None, {"items": items}), strict=True))
    with torch.no_grad():
        separate = fused.recommend_heads["games"].query(
            fused.encoder.user_vector(torch.from_numpy(items), "games")
        )
    # the recommendation query really reads only source-domain events: it differs from running the
    # same patch set on the full history
    assert not np.allclose(outputs["query.games"], separate.numpy(), atol=1e-3)
    # ... and every head of that one run is the torch model's own output
    expected = torch_outputs(fused, items)
    for name in fused.output_names:
        np.testing.assert_allclose(outputs[name], expected[name], atol=1e-4)


def test_an_existing_bundle_is_not_overwritten_by_default(bundle_dir, fused, vocab, tasks):
    before = sha256_file(bundle_dir / "manifest.json")
    with pytest.raises(ExportError, match="already exists"):
        write_bundle(bundle_dir, fused, vocab, tasks, {}, "fp", 0, MAX_LEN, make_items(8))
    assert sha256_file(bundle_dir / "manifest.json") == before


def test_overwrite_replaces_only_a_bundle_never_another_folder(tmp_path, fused, vocab, tasks):
    """--overwrite pointed at a run directory used to delete its checkpoints."""
    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    (run / "pretrain" / "best.pt").write_bytes(b"weights")
    with pytest.raises(ExportError, match="not a bundle"):
        write_bundle(run, fused, vocab, tasks, {}, "fp", 0, MAX_LEN, make_items(8),
                     overwrite=True)
    assert (run / "pretrain" / "best.pt").read_bytes() == b"weights"
    out = tmp_path / "bundle"
    write_bundle(out, fused, vocab, tasks, {}, "fp", 0, MAX_LEN, make_items(8))
    replaced = write_bundle(out, fused, vocab, tasks, {}, "fp2", 0, MAX_LEN, make_items(8),
                            overwrite=True)
    assert replaced.data_fingerprint == "fp2"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "run"]  # nothing left over


def test_a_failed_check_leaves_no_bundle_and_no_temp_dir(
    tmp_path, fused, vocab, tasks, monkeypatch
):
    def failing(*_args: object, **_kwargs: object) -> None:
        raise ParityError("simulated parity failure")

    monkeypatch.setattr(bundle, "check_parity", failing)
    out = tmp_path / "b"
    with pytest.raises(ParityError):
        write_bundle(out, fused, vocab, tasks, {}, "fp", 0, MAX_LEN, make_items(8))
    assert list(tmp_path.iterdir()) == []


def test_task_metadata_must_match_the_heads(tmp_path, fused, vocab, tasks):
    wrong_labels = [replace(tasks[0], labels=("only-one",)), *tasks[1:]]
    with pytest.raises(ExportError, match=r"gender.*1 labels, head has 2"):
        write_bundle(
            tmp_path / "b", fused, vocab, wrong_labels, {}, "fp", 0, MAX_LEN, make_items(8)
        )
    with pytest.raises(ExportError, match="do not match the model's heads"):
        write_bundle(tmp_path / "b", fused, vocab, tasks[:2], {}, "fp", 0, MAX_LEN, make_items(8))
    bad_popularity = [*tasks[:2], replace(tasks[2], popularity=("books::1",))]
    with pytest.raises(ExportError, match="popularity"):
        write_bundle(
            tmp_path / "b", fused, vocab, bad_popularity, {}, "fp", 0, MAX_LEN, make_items(8)
        )
    assert list(tmp_path.iterdir()) == []


def test_calibration_sequences_must_fit_the_window_and_vocabulary(tmp_path, fused, vocab, tasks):
    with pytest.raises(ExportError, match="calibration_items"):
        write_bundle(
            tmp_path / "b",
            fused,
            vocab,
            tasks,
            {},
            "fp",
            0,
            MAX_LEN,
            make_items(8, max_len=MAX_LEN - 1),
        )
    with pytest.raises(ExportError, match="outside"):
        write_bundle(
            tmp_path / "b", fused, vocab, tasks, {}, "fp", 0, MAX_LEN, make_items(8) + vocab.size
        )


def test_the_service_serves_the_int8_twin_only_when_asked(bundle_dir):
    assert load_bundle(bundle_dir).model_file == "model.onnx"
    assert load_bundle(bundle_dir, use_int8=True).model_file == "model.int8.onnx"


def _modes(root):
    return {path.relative_to(root).as_posix(): path.stat().st_mode & 0o777
            for path in [root, *root.rglob("*")]}


def test_a_bundle_is_world_readable_by_default(bundle_dir):
    """Issue 22.12: mkdtemp's 0700 kept a container's uid 10001 out of a mounted bundle."""
    modes = _modes(bundle_dir)
    assert modes["."] == 0o755 and modes["items"] == 0o755
    assert modes["model.onnx"] == 0o644 and modes["manifest.json"] == 0o644
    assert set(modes.values()) == {0o755, 0o644}


def test_a_private_bundle_is_readable_by_its_owner_only(tmp_path, fused, vocab, tasks):
    out = tmp_path / "private"
    write_bundle(out, fused, vocab, tasks, {}, "fp", 0, MAX_LEN, make_items(8), private=True)
    assert set(_modes(out).values()) == {0o700, 0o600}


def test_an_int8_twin_that_fails_its_gate_is_never_shipped(tmp_path, fused, vocab, tasks,
                                                          monkeypatch):
    """Mutation gap of issue 22: the gate's branch could ship a rejected twin unnoticed."""
    from uservec.export import quantize

    def rejected(fp32_path, int8_path, *args, **kwargs):
        report = quantize.quantize_within_gate(fp32_path, int8_path, *args, **kwargs)
        assert int8_path.is_file()  # a real twin was written; only the verdict is forced
        return {**report, "accepted": False}

    monkeypatch.setattr(bundle, "quantize_within_gate", rejected)
    out = tmp_path / "b"
    manifest = write_bundle(out, fused, vocab, tasks, {}, "fp", 0, MAX_LEN,
                            make_items(40, seed=1), quantize=True)
    assert manifest.model.int8_file is None and manifest.model.int8_method is None
    assert manifest.parity["int8"]["accepted"] is False  # the report says why
    assert not (out / "model.int8.onnx").exists()
    assert "model.int8.onnx" not in manifest.files
    assert load_bundle(out, use_int8=True).model_file == "model.onnx"
