import json

import pytest

from uservec.fingerprint import sha256_file
from uservec.manifest import (
    SCHEMA_VERSION,
    SUPPORTED_SCHEMA_VERSIONS,
    BundleError,
    BundleManifest,
    read_manifest,
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
