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


def test_the_vocabulary_is_checked_by_content_not_only_by_size() -> None:
    """Two vocabularies of equal size index other items: the size alone would let it through."""
    from uservec.contract.vocab import Vocabulary
    from uservec.training.checkpoint import vocab_hash, vocab_mismatch

    vocab = Vocabulary(("d::a", "d::b"))
    same_size = Vocabulary(("d::a", "d::c"))
    recorded = {"vocab_size": vocab.size, "vocab_sha256": vocab_hash(vocab)}
    assert vocab_mismatch(recorded, vocab) is None
    assert "vocabulary hash" in str(vocab_mismatch(recorded, same_size))
    assert "vocabulary of 5 ids" in str(vocab_mismatch(recorded, Vocabulary(("d::a", "d::b",
                                                                             "d::c"))))
    # a checkpoint written before the hash was recorded is checked on its size
    assert vocab_mismatch({"vocab_size": vocab.size}, same_size) is None
    assert resume_mismatches({**meta(), **recorded},
                             {**meta(), "vocab_sha256": vocab_hash(same_size)})
    assert resume_mismatches(meta(), {**meta(), "vocab_sha256": "new"}) == []


def test_checkpoints_are_mapped_to_the_cpu_unless_told_otherwise(tmp_path, monkeypatch) -> None:
    """A checkpoint written on a GPU machine must load where there is none."""
    torch.manual_seed(0)
    model = build_encoder(MODEL, 64).eval()
    save_checkpoint(tmp_path / "c.pt", {**meta(), "model": model.state_dict()})
    seen = []
    real_load = torch.load

    def spy(*args, **kwargs):
        seen.append(kwargs.get("map_location"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    load_encoder(tmp_path / "c.pt")
    load_checkpoint(tmp_path / "c.pt", map_location=torch.device("cpu"))
    assert seen == ["cpu", torch.device("cpu")]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU to write a GPU checkpoint")
def test_a_checkpoint_saved_on_a_gpu_loads_on_the_cpu(tmp_path) -> None:
    torch.manual_seed(0)
    model = build_encoder(MODEL, 64).eval().cuda()
    save_checkpoint(tmp_path / "c.pt", {**meta(), "model": model.state_dict()})
    loaded, _ = load_encoder(tmp_path / "c.pt")
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    on_gpu, _ = load_encoder(tmp_path / "c.pt", map_location="cuda")
    assert all(p.device.type == "cuda" for p in on_gpu.parameters())


def test_the_label_regimes_may_change_on_resume_since_pretraining_never_reads_them() -> None:
    saved, current = meta(), meta()
    saved["config"]["eval"] = {"k": 10, "label_fractions": [0.01, 0.05, 0.1, 0.25, 1.0]}
    current["config"]["eval"] = {"k": 10, "label_fractions": [0.1, 1.0]}
    assert resume_mismatches(saved, current) == []
    current["config"]["eval"]["k"] = 20
    assert [p.split(":")[0] for p in resume_mismatches(saved, current)] == ["eval.k"]
