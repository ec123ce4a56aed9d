from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from uservec.contract.ids import NUM_RESERVED
from uservec.training.checkpoint import CheckpointError, load_checkpoint
from uservec.training.config import EvalConfig, ModelConfig, PretrainConfig
from uservec.training.evaluation.next_item import popularity_next_item
from uservec.training.pretrain import load_encoder, pretrain, svd_item_init

MODEL = ModelConfig(dim=16, dilations=(1, 2), max_len=8)
EVAL = EvalConfig(k=10, batch_size=64)


def config(**changes: object) -> PretrainConfig:
    base = PretrainConfig(epochs=2, batch_size=16, lr=1e-2, patience=100)
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_bitwise_identical_weights(tiny_dataset, tmp_path: Path) -> None:
    runs = [pretrain(tiny_dataset, MODEL, config(), EVAL, tmp_path / name, seed)
            for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    a, b, c = (load_checkpoint(r.checkpoint)["model"] for r in runs)
    assert states_equal(a, b)
    assert not states_equal(a, c)
    assert runs[0].history == [
        {**h, "seconds": r["seconds"], "sequences_per_s": r["sequences_per_s"]}
        for h, r in zip(runs[1].history, runs[0].history, strict=True)
    ]


def test_resume_continues_bitwise_as_if_never_stopped(tiny_dataset, tmp_path: Path) -> None:
    for loss in ("full", "sampled"):  # sampled also draws negatives from a resumed generator
        straight = pretrain(tiny_dataset, MODEL, config(epochs=4, loss=loss, num_negatives=8),
                            EVAL, tmp_path / f"straight-{loss}", seed=0)
        pretrain(tiny_dataset, MODEL, config(epochs=2, loss=loss, num_negatives=8), EVAL,
                 tmp_path / f"resumed-{loss}", seed=0)
        resumed = pretrain(tiny_dataset, MODEL, config(epochs=4, loss=loss, num_negatives=8),
                           EVAL, tmp_path / f"resumed-{loss}", seed=0)
        for name in ("last.pt", "best.pt"):
            one = load_checkpoint(tmp_path / f"straight-{loss}" / name)
            two = load_checkpoint(tmp_path / f"resumed-{loss}" / name)
            assert one["epoch"] == two["epoch"]
            assert states_equal(one["model"], two["model"])
            assert states_equal(one["head"], two["head"])
        assert [h["val"] for h in resumed.history] == [h["val"] for h in straight.history]


def test_resume_refuses_a_checkpoint_from_another_config(tiny_dataset, tmp_path: Path) -> None:
    pretrain(tiny_dataset, MODEL, config(epochs=1), EVAL, tmp_path, seed=0)
    with pytest.raises(CheckpointError, match=r"pretrain\.lr"):
        pretrain(tiny_dataset, MODEL, config(epochs=2, lr=5e-3), EVAL, tmp_path, seed=0)
    with pytest.raises(CheckpointError, match="seed"):
        pretrain(tiny_dataset, MODEL, config(epochs=2), EVAL, tmp_path, seed=1)
    fresh = pretrain(tiny_dataset, MODEL, config(epochs=1, lr=5e-3), EVAL, tmp_path, seed=0,
                     resume=False)
    assert load_checkpoint(fresh.checkpoint)["config"]["pretrain"]["lr"] == 5e-3


def test_checkpoint_records_what_makes_it_reproducible(tiny_dataset, tmp_path: Path) -> None:
    result = pretrain(tiny_dataset, MODEL, config(epochs=1), EVAL, tmp_path, seed=7)
    encoder, meta = load_encoder(result.checkpoint)
    assert meta["seed"] == 7
    assert meta["dataset_fingerprint"] == tiny_dataset.fingerprint
    assert meta["vocab_size"] == tiny_dataset.vocab.size == encoder.vocab_size
    assert meta["config"]["model"]["dilations"] == (1, 2)
    assert meta["code_version"]
    assert {"optimizer", "rng", "progress"} <= set(load_checkpoint(tmp_path / "last.pt"))
    assert result.num_params == sum(p.numel() for p in encoder.parameters()) + sum(
        p.numel() for p in result.head.parameters()
    )


def test_early_stopping_restores_the_best_epoch(tiny_dataset, tmp_path: Path) -> None:
    # lr 1e-12 (0 is refused): updates far below float32 resolution, so validation never
    # improves after epoch 1 and patience 2 stops after epoch 3
    result = pretrain(tiny_dataset, MODEL, config(epochs=10, lr=1e-12, patience=2), EVAL,
                      tmp_path, seed=0)
    assert result.stop_reason == "early_stopping"
    assert result.best_epoch == 1 and len(result.history) == 3
    assert result.checkpoint == tmp_path / "best.pt"


def test_max_seconds_stops_after_the_current_epoch(tiny_dataset, tmp_path: Path) -> None:
    result = pretrain(tiny_dataset, MODEL, config(epochs=5, max_seconds=1e-6), EVAL,
                      tmp_path, seed=0)
    assert result.stop_reason == "max_seconds" and len(result.history) == 1


def test_pretraining_beats_popularity_on_sequential_data(tiny_dataset, tmp_path: Path) -> None:
    result = pretrain(tiny_dataset, MODEL, config(epochs=15), EVAL, tmp_path, seed=0)
    popularity = popularity_next_item(tiny_dataset, "valid", k=10)
    assert result.val_metrics["ndcg@10"] > 2 * popularity["ndcg@10"]
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_svd_item_init_reads_training_events_only(dataset_from_sequences) -> None:
    # item 20 occurs only as a user's last event (the P1 test target), item 21 only as the
    # second-to-last (validation target): pretraining must not see them, so neither may the init
    sequences = [[2, 3, 4, 5, 6, 21, 20], [3, 4, 5, 7, 8, 9], [2, 4, 6, 8, 10, 12],
                 [5, 6, 7, 8, 9, 10]]
    dataset = dataset_from_sequences(sequences, vocab_size=24)
    weights = svd_item_init(dataset, dim=3, seed=0)
    assert weights.shape == (24, 3) and weights.dtype == np.float32
    assert not weights[:NUM_RESERVED].any() and not weights[[20, 21]].any()
    assert weights[[2, 3, 4]].any(axis=1).all()
    np.testing.assert_array_equal(weights, svd_item_init(dataset, dim=3, seed=0))


def test_pretraining_starts_from_the_svd_init(tiny_dataset, tmp_path: Path) -> None:
    result = pretrain(tiny_dataset, MODEL, config(epochs=1, item_init="svd"), EVAL, tmp_path, 0)
    assert result.best_epoch == 1
    with pytest.raises(ValueError, match="item_init"):
        pretrain(tiny_dataset, MODEL, config(epochs=1, item_init="pca"), EVAL, tmp_path / "x", 0)


def test_pretraining_windows_can_be_shorter_than_the_model_reads(tiny_dataset, tmp_path: Path,
                                                                  monkeypatch) -> None:
    import uservec.training.corpus_pretrain as module

    lengths: list[int] = []
    real = module.NextItemWindows

    def spy(dataset, max_len):
        lengths.append(max_len)
        return real(dataset, max_len)

    monkeypatch.setattr(module, "NextItemWindows", spy)
    pretrain(tiny_dataset, MODEL, config(epochs=1, window=4), EVAL, tmp_path / "w", 0)
    pretrain(tiny_dataset, MODEL, config(epochs=1), EVAL, tmp_path / "m", 0)
    assert lengths == [4, MODEL.max_len]
    with pytest.raises(ValueError, match="window"):
        pretrain(tiny_dataset, MODEL, config(epochs=1, window=-1), EVAL, tmp_path / "x", 0)
