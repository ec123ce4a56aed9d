"""Pretraining on another population: items mapped, users pooled, labels as auxiliary heads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from uservec.training.config import ConfigError, CorpusConfig, DataConfig, load_config
from uservec.training.data.corpus import load_corpus
from uservec.training.data.prepare import load_dataset
from uservec.training.runner import finish_report, run_training


def _population(folder: Path, users: int, seed: int, extra_items: int = 0) -> None:
    """Two tastes (items 0-9 vs 10-19) that decide the gender; ``extra_items`` unmatched ones."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    events, people = ["user_id,item_id,timestamp"], ["user_id,gender"]
    for user in range(users):
        taste = user % 2
        people.append(f"u{user},{'MF'[taste]}")
        for t in range(12):
            item = f"i{taste * 10 + int(rng.integers(10))}" if rng.random() < 0.8 else (
                f"i{int(rng.integers(20))}")
            if extra_items and rng.random() < 0.2:
                item = f"x{int(rng.integers(extra_items))}"
            events.append(f"u{user},{item},{t}")
    (folder / "events.csv").write_text("\n".join(events) + "\n")
    (folder / "users.csv").write_text("\n".join(people) + "\n")


def _config(tmp_path: Path, aux_weight: float, objective: str = "set") -> Path:
    _population(tmp_path / "task", 60, seed=0)
    _population(tmp_path / "corpus", 80, seed=1, extra_items=5)
    path = tmp_path / "transfer.toml"
    path.write_text(f"""
[data]
format = "generic"
path = "{tmp_path / 'task' / 'events.csv'}"
users_path = "{tmp_path / 'task' / 'users.csv'}"
[model]
dim = 16
dilations = [1]
max_len = 12
[pretrain]
objective = "{objective}"
epochs = 2
[pretrain.corpus]
format = "generic"
path = "{tmp_path / 'corpus' / 'events.csv'}"
users_path = "{tmp_path / 'corpus' / 'users.csv'}"
by = "id"
label_tasks = ["gender"]
aux_weight = {aux_weight}
[eval]
label_fractions = [0.25, 1.0]
[[tasks]]
name = "gender"
kind = "profile"
attribute = "gender"
[adapt]
methods = ["head-only"]
final_method = "head-only"
max_epochs = 2
""")
    return path


def test_corpus_items_map_by_id_and_unmatched_ones_are_dropped(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, 0.0))
    dataset = load_dataset(cfg.data)
    assert cfg.pretrain.corpus is not None
    corpus = load_corpus(cfg.pretrain.corpus, cfg.data, dataset)
    assert corpus.bags.shape == (80, dataset.catalog.size) and len(corpus.sequences) == 80
    assert corpus.summary["items"] == corpus.summary["items_matched"] + 5  # the x items
    assert corpus.summary["events_kept"] == sum(len(s) for s in corpus.sequences)
    assert corpus.summary["events_kept"] < corpus.summary["events"]
    assert all(s.size and s.min() >= 1 for s in corpus.sequences)  # task vocabulary ids


def test_by_title_needs_titles(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, 0.0))
    dataset = load_dataset(cfg.data)
    corpus = CorpusConfig(format="generic", path=str(tmp_path / "corpus" / "events.csv"))
    with pytest.raises(ValueError, match="needs item titles"):
        load_corpus(corpus, DataConfig(format="generic", path=cfg.data.path), dataset)


def test_a_corpus_needs_the_set_objective_and_known_label_tasks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="sets of items"):
        load_config(_config(tmp_path, 0.0, objective="next_item"))
    with pytest.raises(ConfigError, match="'age' is not a profile task"):
        load_config(_config(tmp_path, 0.0), ["pretrain.corpus.label_tasks=[age]"])


def test_transfer_run_reports_pooled_baselines_and_auxiliary_heads(tmp_path: Path) -> None:
    cfg = load_config(_config(tmp_path, 1.0))
    report = finish_report(run_training(cfg, tmp_path / "out"), tmp_path / "out")
    assert report["corpus"]["aux_tasks"] == {"gender": 80} and report["corpus"]["users"] == 80
    assert any("corpus" in note and "auxiliary heads" in note
               for note in report["protocol_notes"])
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    regimes = saved["tasks"]["tasks"]["gender"]["regimes"]
    assert list(regimes) == ["0.25", "1.0"]
    for regime in regimes.values():
        assert {"lr", "lr_bal", "lr_pooled", "lr_bal_pooled", "svd_lr", "svd_lr_bal",
                "head-only"} <= set(regime["methods"])
        # 80 labelled corpus users make a 25% regime (12 own rows) as good as all labels
        assert regime["methods"]["lr_pooled"]["accuracy"]["mean"] > 0.8
    assert saved["pretrain"]["objective"] == "set"
