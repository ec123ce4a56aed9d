"""Session fixtures shared by the export and contract tests (the tiny seeded model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from tiny_export import DIM, MAX_LEN, build_fused, make_items, tiny_tasks, tiny_vocab

from uservec.contract.manifest import TensorSpec
from uservec.contract.vocab import Vocabulary
from uservec.export.bundle import TaskExport, write_bundle
from uservec.export.onnx_export import export_onnx
from uservec.training.fused import FusedUserModel


@pytest.fixture(scope="session")
def vocab() -> Vocabulary:
    return tiny_vocab()


@pytest.fixture(scope="session")
def fused(vocab) -> FusedUserModel:
    return build_fused(vocab)


@pytest.fixture(scope="session")
def tasks(vocab) -> list[TaskExport]:
    return tiny_tasks(vocab)


@pytest.fixture(scope="session")
def exported(tmp_path_factory, fused, vocab) -> tuple[Path, list[TensorSpec], list[TensorSpec]]:
    """The tiny fused model exported once (read-only for tests), with its input/output specs."""
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    inputs, outputs = export_onnx(fused, path, vocab.size, MAX_LEN)
    return path, inputs, outputs


@pytest.fixture(scope="session")
def onnx_path(exported) -> Path:
    return exported[0]


@pytest.fixture(scope="session")
def bundle_dir(tmp_path_factory, fused, vocab, tasks) -> Path:
    """One bundle (fp32 + int8) written once per session; tests that damage it work on a copy."""
    out = tmp_path_factory.mktemp("bundles") / "tiny"
    write_bundle(
        out,
        fused,
        vocab,
        tasks,
        {"name": "tiny", "model": {"dim": DIM}},
        "data-fp",
        0,
        MAX_LEN,
        make_items(160, seed=1),
        quantize=True,
    )
    return out


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path) -> Path:
    copy = tmp_path / "bundle"
    shutil.copytree(bundle_dir, copy)
    return copy
