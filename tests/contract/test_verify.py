import json
import subprocess
import sys

import pytest

from uservec.contract.manifest import BundleError, BundleManifest, manifest_digest
from uservec.contract.verify import bundle_info, catalogue_problem, load_and_verify


def test_a_fresh_bundle_verifies_with_smoke_inference(bundle_dir):
    manifest = load_and_verify(bundle_dir, smoke=True)
    assert manifest.model.file == "model.onnx"


@pytest.mark.parametrize(
    "rel", ["model.onnx", "model.int8.onnx", "vocab.json", "items/games.npy", "index/games.faiss"]
)
def test_a_truncated_file_is_refused_by_name(bundle_copy, rel):
    path = bundle_copy / rel
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(BundleError, match=rf"{rel}: sha256 mismatch"):
        load_and_verify(bundle_copy)


def test_a_tampered_file_is_refused_by_name(bundle_copy):
    path = bundle_copy / "items/games.json"
    keys = json.loads(path.read_text())
    path.write_text(json.dumps(keys[::-1]))  # same size, same keys, different order
    with pytest.raises(BundleError, match=r"items/games.json: sha256 mismatch"):
        load_and_verify(bundle_copy, smoke=False)


def test_a_missing_file_is_refused_by_name(bundle_copy):
    (bundle_copy / "popularity/games.json").unlink()
    with pytest.raises(
        BundleError, match=r"popularity/games.json: listed in the manifest but missing"
    ):
        load_and_verify(bundle_copy, smoke=False)


def _edit_manifest(bundle, edit, reseal=True):
    """Edit manifest.json; ``reseal`` recomputes its digest, as a buggy or hostile writer would,
    so that the check under test is the one that refuses it, not the digest."""
    path = bundle / "manifest.json"
    raw = json.loads(path.read_text())
    edit(raw)
    if reseal:
        raw["manifest_sha256"] = manifest_digest(BundleManifest.model_validate(raw))
    path.write_text(json.dumps(raw))


def test_a_hand_edited_manifest_is_refused(bundle_copy):
    """Swapping two labels changes no file's checksum; without the digest the service would load
    the bundle and answer gender "F" for "M"."""
    _edit_manifest(bundle_copy, lambda raw: raw["tasks"][0]["labels"].reverse(), reseal=False)
    with pytest.raises(BundleError, match=r"manifest\.json: content does not match"):
        load_and_verify(bundle_copy, smoke=False)


def test_a_reindented_manifest_still_verifies(bundle_copy):
    path = bundle_copy / "manifest.json"
    path.write_text(json.dumps(json.loads(path.read_text()), indent=7, sort_keys=True))
    load_and_verify(bundle_copy, smoke=False)


def test_an_unsupported_schema_version_is_refused_listing_the_supported_ones(bundle_copy):
    _edit_manifest(bundle_copy, lambda raw: raw.update(schema_version=99))
    with pytest.raises(BundleError, match=r"version 99 is not supported.*versions \[1\]"):
        load_and_verify(bundle_copy)


def test_a_file_used_but_not_checksummed_is_refused(bundle_copy):
    _edit_manifest(bundle_copy, lambda raw: raw["files"].pop("index/games.faiss"))
    with pytest.raises(BundleError, match=r"index/games.faiss: used by the manifest but has no"):
        load_and_verify(bundle_copy, smoke=False)


def test_a_graph_that_disagrees_with_the_manifest_fails_the_smoke_test(bundle_copy):
    def rename_output(raw):
        raw["model"]["outputs"][1]["name"] = raw["tasks"][0]["output"] = "profile.x"

    _edit_manifest(bundle_copy, rename_output)
    with pytest.raises(BundleError, match="graph signature"):
        load_and_verify(bundle_copy, smoke=True)


def test_bundle_info_summarises_without_loading_the_graph(bundle_dir, bundle_copy):
    (bundle_copy / "model.onnx").write_bytes(b"not a graph")  # never opened by bundle_info
    assert bundle_info(bundle_copy)["bundle_version"].startswith("tiny-")
    info = bundle_info(bundle_dir)
    assert info["bundle_version"].startswith("tiny-")
    assert [t["name"] for t in info["tasks"]] == ["gender", "age", "games"]
    assert info["tasks"][2]["index_kind"] == "flat" and info["model"]["int8_method"] == "static"
    assert info["total_bytes"] == sum(info["file_bytes"].values()) > 0
    assert bundle_info(bundle_dir, verify=True)["verified"] is True
    assert info["verified"] is None and info["problem"] is None  # not checked: not "False"
    damaged = bundle_info(bundle_copy, verify=True)
    assert damaged["verified"] is False and "sha256 mismatch" in damaged["problem"]


def test_the_loading_side_never_imports_torch(bundle_dir):
    code = (
        "import sys; from uservec.contract.verify import load_and_verify, bundle_info; "
        f"load_and_verify({str(bundle_dir)!r}); bundle_info({str(bundle_dir)!r}); "
        "import uservec.service.app; assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_a_bundle_the_service_would_refuse_does_not_verify(bundle_copy):
    """verify said OK to a bundle whose popularity list was empty; the service refused it."""
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    (recommend,) = [t for t in manifest["tasks"] if t["kind"] == "recommend"]
    (bundle_copy / recommend["popularity_file"]).write_text("[]")
    with pytest.raises(BundleError, match="no popularity list"):
        load_and_verify(bundle_copy, smoke=False, checksums=False)
    _edit_manifest(bundle_copy, lambda raw: next(
        t for t in raw["tasks"] if t["kind"] == "recommend").pop("popularity_file"))
    with pytest.raises(BundleError, match="has no popularity_file"):
        load_and_verify(bundle_copy, smoke=False, checksums=False)


def test_catalogue_rules():
    assert catalogue_problem("games", ["games::1", "games::2"], ["games::2"]) is None
    assert "empty" in catalogue_problem("games", [], ["games::1"])
    assert "not unique" in catalogue_problem("games", ["games::1", "games::1"], ["games::1"])
    assert "outside domain" in catalogue_problem("games", ["books::1"], ["books::1"])
    assert "no popularity" in catalogue_problem("games", ["games::1"], [])
    assert "not among the items" in catalogue_problem("games", ["games::1"], ["games::9"])



@pytest.mark.parametrize("path", ["/tmp/evil.json", "../outside.json", "items/../../x.json"])
def test_a_manifest_pointing_outside_the_bundle_is_refused(bundle_copy, path):
    """A manifest (hand-edited or hostile) must not make the service read files elsewhere."""
    def point_outside(raw):
        (recommend,) = [t for t in raw["tasks"] if t["kind"] == "recommend"]
        raw["files"][path] = raw["files"].pop(recommend["popularity_file"])
        recommend["popularity_file"] = path

    _edit_manifest(bundle_copy, point_outside, reseal=False)  # the schema refuses it first
    with pytest.raises(BundleError, match="not a path inside the bundle"):
        load_and_verify(bundle_copy, smoke=False)


@pytest.mark.parametrize(
    ("prior", "power", "message"),
    [
        ([0.5, 0.5, 0.0], 1.0, "class_prior has 3 values for 2 labels"),
        ([0.5, 0.6], 1.0, "not a distribution"),
        ([1.5, -0.5], 1.0, "not a distribution"),
        ([0.5, 0.5], None, "come together"),
        ([0.5, 0.5], -1.0, "not a non-negative number"),
    ],
)
def test_a_profile_task_with_a_broken_prior_is_refused(bundle_copy, prior, power, message):
    def edit(raw):
        task = next(t for t in raw["tasks"] if t["kind"] == "profile" and len(t["labels"]) == 2)
        task.update(class_prior=prior, prior_power=power)

    _edit_manifest(bundle_copy, edit)
    with pytest.raises(BundleError, match=message):
        load_and_verify(bundle_copy, smoke=False, checksums=False)
