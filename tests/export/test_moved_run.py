"""A finished run folder exports the same bundle wherever it is, without its raw data.

Export used to prepare the dataset again from the raw files, at a path relative to the current
directory: a run folder moved to another machine, or whose raw data was gone, could not be
exported. It now reads the run folder alone (training.run_dir.RunDir).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from uservec.cli import main
from uservec.training import run_dir
from uservec.training.data.synthetic import generate_synthetic

CONFIG = """
name = "moved"
[data]
format = "generic"
path = "raw/interactions.csv"
users_path = "raw/users.csv"
domain_col = "domain"
[model]
dim = 16
dilations = [1, 2]
max_len = 8
[pretrain]
epochs = 1
batch_size = 32
[[tasks]]
name = "gender"
kind = "profile"
attribute = "gender"
low_label = false
[[tasks]]
name = "cold"
kind = "cross_domain"
target_domain = "domain1"
[adapt]
methods = ["adapter"]
max_epochs = 1
patience = 1
"""

#: what the model is: the graph, the vocabulary, and each recommendation head's item vectors
MODEL_FILES = ("model.onnx", "vocab.json", "items/cold.npy", "items/cold.json")


def write_raw_data(folder: Path) -> None:
    """Generated events and users written as the generic CSV format reads them."""
    raw = generate_synthetic(n_users=120, n_items=40, n_domains=2, seed=0)
    folder.mkdir()
    raw.interactions[["user_id", "item_id", "timestamp", "domain"]].to_csv(
        folder / "interactions.csv", index=False)
    raw.users.rename_axis("user_id").reset_index().to_csv(folder / "users.csv", index=False)


def export(run: Path, out: Path) -> dict[str, str]:
    result = CliRunner().invoke(main, ["export", str(run), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "manifest.json").read_text())["files"]


def test_a_moved_run_without_its_raw_data_exports_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.chdir(tmp_path)  # the config's data paths are relative to this folder
    write_raw_data(tmp_path / "raw")
    (tmp_path / "tiny.toml").write_text(CONFIG)
    result = CliRunner().invoke(main, ["run", "tiny.toml", "--out", "run"])
    assert result.exit_code == 0, result.output
    in_place = export(Path("run"), tmp_path / "bundle-in-place")

    moved = tmp_path / "elsewhere" / "run"
    moved.parent.mkdir()
    shutil.move(tmp_path / "run", moved)
    (tmp_path / "raw").rename(tmp_path / "raw-gone")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    # the splits were made once, when the data was prepared: export reads them, makes none
    monkeypatch.setattr(run_dir, "plan_evaluation", lambda *_: pytest.fail("splits made again"))
    after_move = export(moved, tmp_path / "bundle-moved")

    assert all(name in in_place for name in MODEL_FILES)
    assert {name: after_move[name] for name in MODEL_FILES} == {
        name: in_place[name] for name in MODEL_FILES}
