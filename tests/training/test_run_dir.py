"""The run folder: one owner of its layout, and later stages read it alone."""

from __future__ import annotations

import numpy as np
import pytest

from uservec.training.config import DataConfig, ExperimentConfig
from uservec.training.data import prepare as prepare_module
from uservec.training.data.prepare import load_run_dataset, prepare_run_dataset
from uservec.training.run_dir import RunDir, RunDirError

DATA = DataConfig(format="synthetic", synthetic_users=20, synthetic_items=12)


def test_the_layout_has_one_owner(tmp_path):
    run = RunDir(tmp_path)
    assert run.encoder_path == tmp_path / "pretrain" / "best.pt"
    assert run.task_artifact_path("gender") == tmp_path / "tasks" / "gender" / "final.pt"
    assert run.dataset_dir == tmp_path / "prepared" / "dataset"
    run.write_config(ExperimentConfig(name="x", data=DATA))
    assert run.read_config().data == DATA and run.config_payload()["name"] == "x"
    with pytest.raises(RunDirError, match="no pretrained encoder"):
        run.require_encoder()


def test_the_prepared_data_is_kept_in_the_run_and_reused(tmp_path, monkeypatch):
    run = RunDir(tmp_path / "run")
    dataset = prepare_run_dataset(DATA, run)
    assert run.has_dataset()
    kept = run.load_dataset()
    assert kept.fingerprint == dataset.fingerprint and kept.vocab == dataset.vocab
    # a resumed run with unchanged inputs prepares nothing again
    monkeypatch.setattr(prepare_module, "prepare", lambda *_, **__: pytest.fail("re-prepared"))
    assert prepare_run_dataset(DATA, run).fingerprint == dataset.fingerprint
    assert load_run_dataset(DATA, run.root).fingerprint == dataset.fingerprint


def test_a_shared_cache_is_linked_into_the_run(tmp_path):
    config = DataConfig(format="synthetic", synthetic_users=20, synthetic_items=12,
                        cache_dir=str(tmp_path / "cache"))
    run = RunDir(tmp_path / "run")
    prepare_run_dataset(config, run)
    (cached,) = (tmp_path / "cache").iterdir()
    assert (cached / "items.npy").read_bytes() == (run.dataset_dir / "items.npy").read_bytes()
    # hard links, not a second copy of a possibly large dataset (same file system here)
    assert (cached / "items.npy").stat().st_ino == (run.dataset_dir / "items.npy").stat().st_ino


def test_a_run_made_before_the_layout_reads_its_single_older_preparation(tmp_path):
    run = RunDir(tmp_path)
    dataset = prepare_run_dataset(DATA, run)
    run.dataset_dir.rename(run.prepared_root / "synthetic-abc")
    assert run.load_dataset().fingerprint == dataset.fingerprint
    (run.prepared_root / "synthetic-abc").rename(run.prepared_root / "other")
    prepare_run_dataset(DATA, run)
    run.dataset_dir.rename(run.prepared_root / "second")
    with pytest.raises(RunDirError, match="found 2 older preparations"):
        run.load_dataset()


def test_splits_are_saved_once_and_read_back(tmp_path):
    run = RunDir(tmp_path)
    assert run.load_splits() is None
    run.save_splits({"cross_domain": {"books": {"test": np.array([3, 1], dtype=np.int64)}}})
    assert run.load_splits() == {"cross_domain": {"books": {"test": [3, 1]}}}


def test_the_evaluation_plan_is_kept_with_what_it_was_made_from(tmp_path):
    """Splits are made once at preparation; a later stage never reads stale ones."""
    import dataclasses

    from uservec.training.config import TaskConfig
    from uservec.training.evaluation.plan import plan_evaluation

    cfg = ExperimentConfig(name="x", data=DATA, tasks=(
        TaskConfig("gender", "profile", attribute="gender", low_label=False),))
    run = RunDir(tmp_path)
    dataset = prepare_run_dataset(DATA, run)
    plan = plan_evaluation(cfg, dataset)
    run.save_plan(plan, cfg, dataset)
    loaded = run.load_plan(cfg, dataset)
    assert loaded is not None and loaded.to_payload() == plan.to_payload()
    other = dataclasses.replace(cfg, adapt=dataclasses.replace(cfg.adapt, valid_fraction=0.3))
    assert run.load_plan(other, dataset) is None
    assert run.plan(other, dataset).to_payload() == plan_evaluation(other, dataset).to_payload()
