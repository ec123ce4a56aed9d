from __future__ import annotations

import dataclasses

import pytest
import torch

from uservec.training.checkpoint import (
    CheckpointError,
    build_encoder,
    checkpoint_meta,
    load_checkpoint,
    load_encoder,
    resume_mismatches,
    save_checkpoint,
)
from uservec.training.config import EvalConfig, ModelConfig, PretrainConfig

MODEL = ModelConfig(dim=16, dilations=(1, 2), max_len=8)


def meta(**pretrain: object) -> dict:
    return {
        "config": {
            "model": dataclasses.asdict(MODEL),
            "pretrain": dataclasses.asdict(PretrainConfig(**pretrain)),  # type: ignore[arg-type]
            "eval": dataclasses.asdict(EvalConfig()),
        },
        "seed": 0,
        "dataset_fingerprint": "abc",
        "vocab_size": 64,
    }


def test_load_encoder_rebuilds_the_saved_model(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_encoder(MODEL, 64).eval()
    save_checkpoint(tmp_path / "c.pt", {**meta(), "model": model.state_dict(), "epoch": 3})
    loaded, info = load_encoder(tmp_path / "c.pt")
    items = torch.randint(2, 64, (2, 8))
    assert torch.equal(loaded(items), model(items))
    assert info["epoch"] == 3 and "model" not in info
    assert not (tmp_path / "c.pt.tmp").exists()


def test_meta_drops_state_tensors() -> None:
    payload = {**meta(), "model": {}, "head": {}, "optimizer": {}, "rng": {}}
    assert set(checkpoint_meta(payload)) == set(meta())


def test_unknown_format_and_missing_file_are_refused(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"format_version": 99}, tmp_path / "old.pt")
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(tmp_path / "old.pt")


def test_resume_check_names_what_differs_but_allows_a_new_budget() -> None:
    assert resume_mismatches(meta(epochs=2), meta(epochs=4, max_seconds=60.0)) == []
    saved = meta(lr=1e-3)
    current = {**meta(lr=2e-3), "dataset_fingerprint": "other"}
    problems = resume_mismatches(saved, current)
    assert len(problems) == 2
    assert any(p.startswith("pretrain.lr") for p in problems)
    assert any(p.startswith("dataset_fingerprint") for p in problems)


def test_an_option_newer_than_the_checkpoint_matches_only_at_its_default() -> None:
    saved = meta()
    del saved["config"]["pretrain"]["bag_weight"]  # written before the option existed
    assert resume_mismatches(saved, meta()) == []
    problems = resume_mismatches(saved, meta(bag_weight=1.0))
    assert [p.split(":")[0] for p in problems] == ["pretrain.bag_weight"]


def test_lists_and_tuples_compare_equal() -> None:
    saved = meta()
    saved["config"]["model"]["dilations"] = list(MODEL.dilations)
    assert resume_mismatches(saved, meta()) == []
