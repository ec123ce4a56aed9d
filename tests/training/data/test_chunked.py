"""Chunked preparation equals the in-memory one, and its memory-mapped result trains lazily."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from uservec.training.batching import NextItemWindows, pretrain_examples, training_event_mask
from uservec.training.config import DataConfig
from uservec.training.data.chunked import prepare_chunked
from uservec.training.data.prepare import load_dataset, prepare_run_dataset
from uservec.training.data.synthetic import generate_synthetic
from uservec.training.run_dir import RunDir

FIELDS = ("user_ids", "offsets", "items", "item_index", "catalog", "catalog_domain",
          "timestamps", "event_domain")


@pytest.fixture(scope="module")
def events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated events file in scrambled row order (users interleaved across chunks)."""
    folder = tmp_path_factory.mktemp("events")
    frame = generate_synthetic(120, 50, 2, seed=0).interactions.sample(frac=1.0, random_state=0)
    frame.to_csv(folder / "events.csv", index=False)
    frame.to_parquet(folder / "events.parquet")
    return folder


@pytest.mark.parametrize("name", ["events.csv", "events.parquet"])
def test_chunked_preparation_equals_the_in_memory_one(events: Path, tmp_path: Path, name: str):
    reference = load_dataset(DataConfig(format="generic", path=str(events / "events.csv"),
                                        min_count=2))
    chunked = prepare_chunked(events / name, tmp_path / "prepared", name="x", min_count=2,
                              chunk_rows=500)  # many chunks and buckets
    for field in FIELDS:
        assert np.array_equal(np.asarray(getattr(chunked, field)),
                              np.asarray(getattr(reference, field))), field
    assert chunked.domains == reference.domains
    assert chunked.vocab.to_json() == reference.vocab.to_json()
    assert isinstance(chunked.items, np.memmap)  # read lazily, not loaded
    assert not (tmp_path / "prepared" / "spill").exists()


def test_lazy_windows_equal_the_materialised_examples(events: Path, tmp_path: Path):
    dataset = prepare_chunked(events / "events.parquet", tmp_path / "p", name="x")
    for max_len in (3, 8, 100):
        inputs, targets = pretrain_examples(dataset, max_len)
        windows = NextItemWindows(dataset, max_len)
        got_inputs, got_targets = windows[torch.arange(len(windows))]
        assert np.array_equal(got_inputs.numpy(), inputs)
        assert np.array_equal(got_targets.numpy(), targets)
        assert windows.num_targets() == int((targets != 0).sum())
    lengths = dataset.lengths()
    assert training_event_mask(dataset).sum() == np.maximum(lengths - 2, 0).sum()


def test_a_run_with_chunk_rows_prepares_the_same_dataset_memory_mapped(tmp_path: Path):
    raw = generate_synthetic(90, 40, 2, seed=1)
    events = raw.interactions.rename(columns={"user_id": "uid"})
    events.to_parquet(tmp_path / "events.parquet")
    assert raw.users is not None
    raw.users.reset_index().rename(columns={"user_id": "uid"}).to_csv(tmp_path / "users.csv",
                                                                       index=False)
    config = DataConfig(format="generic", path=str(tmp_path / "events.parquet"), user_col="uid",
                        domain_col="domain", users_path=str(tmp_path / "users.csv"))
    whole = prepare_run_dataset(config, RunDir(tmp_path / "whole"))
    chunked_config = dataclasses.replace(config, chunk_rows=700)
    chunked = prepare_run_dataset(chunked_config, RunDir(tmp_path / "chunked"))
    assert isinstance(chunked.items, np.memmap)
    assert chunked.fingerprint == whole.fingerprint
    for field in FIELDS:
        assert np.array_equal(np.asarray(getattr(chunked, field)),
                              np.asarray(getattr(whole, field))), field
    assert chunked.users is not None and whole.users is not None
    pd.testing.assert_frame_equal(chunked.users, whole.users)
    # a resumed run reuses the run folder's copy
    again = prepare_run_dataset(chunked_config, RunDir(tmp_path / "chunked"))
    assert isinstance(again.items, np.memmap) and again.fingerprint == whole.fingerprint
