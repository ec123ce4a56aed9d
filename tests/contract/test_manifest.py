import json
from pathlib import Path

import pytest

from uservec.contract.fingerprint import sha256_file
from uservec.contract.manifest import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    BundleError,
    BundleManifest,
    manifest_digest,
    read_manifest,
    sealed,
    verify_files,
)


def _manifest(files):
    return {
        "schema_version": SCHEMA_VERSION,
        "bundle_version": "t-20250101T000000Z-00000000",
        "created_at": "2025-01-01T00:00:00+00:00",
        "code_version": "0.1.0",
        "data_fingerprint": "fp",
        "seed": 0,
        "config": {},
        "model": {
            "file": "model.onnx",
            "opset": 17,
            "max_len": 8,
            "dim": 16,
            "inputs": [{"name": "items", "dtype": "int64", "shape": ["batch", "seq"]}],
            "outputs": [{"name": "user_vector", "dtype": "float32", "shape": ["batch", 16]}],
        },
        "tasks": [{"name": "g", "kind": "profile", "output": "profile.g", "labels": ["F", "M"]}],
        "files": files,
    }


@pytest.fixture
def bundle(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"graph bytes")
    raw = _manifest({"model.onnx": sha256_file(tmp_path / "model.onnx")})
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    return tmp_path


def test_current_version_is_supported():
    assert SCHEMA_VERSION in SUPPORTED_SCHEMA_VERSIONS


def test_round_trip_and_checksums_pass(bundle):
    manifest = read_manifest(bundle)
    assert isinstance(manifest, BundleManifest) and manifest.tasks[0].labels == ["F", "M"]
    assert manifest.model.int8_file is None and manifest.tasks[0].index_params is None
    verify_files(bundle, manifest)


def test_missing_manifest_says_so(tmp_path):
    with pytest.raises(BundleError, match="manifest not found"):
        read_manifest(tmp_path)


def test_invalid_json_is_refused(bundle):
    (bundle / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(bundle)


@pytest.mark.parametrize("version", [0, 2, "1", None])
def test_other_schema_versions_are_refused_with_the_supported_list(bundle, version):
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["schema_version"] = version
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"not supported; this uservec reads versions \[1\]"):
        read_manifest(bundle)


def test_a_manifest_missing_a_field_is_refused(bundle):
    raw = json.loads((bundle / "manifest.json").read_text())
    del raw["model"]
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match="does not match the schema"):
        read_manifest(bundle)


def test_modified_and_missing_files_are_named(bundle):
    manifest = read_manifest(bundle)
    (bundle / "model.onnx").write_bytes(b"graph bytez")
    with pytest.raises(BundleError, match=r"model.onnx: sha256 mismatch"):
        verify_files(bundle, manifest)
    (bundle / "model.onnx").unlink()
    with pytest.raises(BundleError, match=r"model.onnx: listed in the manifest but missing"):
        verify_files(bundle, manifest)


def _seal(bundle):
    manifest = sealed(read_manifest(bundle))
    (bundle / "manifest.json").write_text(manifest.model_dump_json(indent=2))
    return json.loads((bundle / "manifest.json").read_text())


def test_a_sealed_manifest_verifies_and_survives_reindenting(bundle):
    raw = _seal(bundle)
    assert raw["manifest_sha256"] == manifest_digest(read_manifest(bundle))
    verify_files(bundle, read_manifest(bundle))
    (bundle / "manifest.json").write_text(json.dumps(raw, indent=5, sort_keys=True))
    verify_files(bundle, read_manifest(bundle))


@pytest.mark.parametrize(
    "edit",
    [
        lambda raw: raw["tasks"][0]["labels"].reverse(),
        lambda raw: raw["tasks"][0].update(output="profile.h"),
        lambda raw: raw["model"].update(max_len=9),
        lambda raw: raw["tasks"][0].update(class_prior=[0.5, 0.5], prior_power=1.0),
    ],
)
def test_an_edit_to_a_sealed_manifest_is_refused(bundle, edit):
    raw = _seal(bundle)
    edit(raw)
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"manifest\.json: content does not match .*edited after"):
        verify_files(bundle, read_manifest(bundle))


def test_an_infinite_parity_diff_round_trips_through_the_digest(bundle):
    """pydantic writes inf as null: the digest must be over what the file holds."""
    manifest = read_manifest(bundle).model_copy(update={"parity": {"max": float("inf")}})
    (bundle / "manifest.json").write_text(sealed(manifest).model_dump_json())
    verify_files(bundle, read_manifest(bundle))


def test_a_manifest_written_before_the_digest_still_verifies(bundle):
    manifest = read_manifest(bundle)
    assert manifest.manifest_sha256 is None
    verify_files(bundle, manifest)


def test_a_task_without_a_prior_digests_as_bundles_written_before_the_field(bundle):
    """class_prior / prior_power are left out when absent: older sealed bundles keep verifying."""
    task = json.loads(read_manifest(bundle).model_dump_json())["tasks"][0]
    assert "class_prior" not in task and "prior_power" not in task
    raw = _manifest({"model.onnx": sha256_file(bundle / "model.onnx")})
    raw["tasks"][0].update(class_prior=[0.25, 0.75], prior_power=0.5)
    (bundle / "manifest.json").write_text(json.dumps(raw))
    sealed_raw = _seal(bundle)
    assert sealed_raw["tasks"][0]["class_prior"] == [0.25, 0.75]
    verify_files(bundle, read_manifest(bundle))


def test_a_sealed_manifest_written_by_uservec_0_1_0_keeps_its_digest():
    """A real 0.1.0 demo bundle's manifest (two tasks): every field added since is left out of
    the digest when it holds its default, so bundles users already deployed keep verifying."""
    raw = (Path(__file__).parent / "data" / "manifest-0.1.0-demo.json").read_text()
    manifest = BundleManifest.model_validate_json(raw)
    assert manifest.manifest_sha256 is not None and len(manifest.tasks) == 2
    assert manifest_digest(manifest) == manifest.manifest_sha256
    assert {task.served_kind for task in manifest.tasks} == {"deep"}
