"""Data-parallel pretraining: 2 CPU processes (gloo, through torchrun) match one process.

With the same global batch, the 2-process run's mean loss per epoch equals the one-process run's
to float rounding (gradients are all-reduced weighted by each rank's targets: the same update),
so the tolerance is 1e-5 relative; dropout is off because each rank draws its own masks. The
checkpoint rank 0 wrote resumes like a one-process one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from uservec.cli import main
from uservec.launch import torchrun_command
from uservec.training.distributed import World, shard

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch built without torch.distributed")

CONFIG = """
name = "tiny-ddp"
[data]
format = "synthetic"
synthetic_users = 120
synthetic_items = 60
[model]
dim = 16
dilations = [1, 2]
max_len = 12
dropout = 0.0
[pretrain]
epochs = 2
batch_size = 32
"""
#: relative tolerance on each epoch's loss (observed: ~1e-8, float summation order)
LOSS_RTOL = 1e-5


def history(out: Path) -> list[dict]:
    return json.loads((out / "report.json").read_text())["pretrain"]["history"]


def test_two_processes_match_one_process_with_the_same_global_batch(tmp_path: Path):
    config = tmp_path / "tiny.toml"
    config.write_text(CONFIG)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    two = subprocess.Popen(
        torchrun_command(2, [str(config), "--out", str(tmp_path / "two")]),
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    one = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "one")])
    output, _ = two.communicate(timeout=120)
    assert one.exit_code == 0, one.output
    assert two.returncode == 0, output
    ones, twos = history(tmp_path / "one"), history(tmp_path / "two")
    assert len(ones) == len(twos) == 2
    for a, b in zip(ones, twos, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=LOSS_RTOL)
        assert b["val"]["ndcg@10"] == pytest.approx(a["val"]["ndcg@10"], rel=LOSS_RTOL)
    # only rank 0 wrote: one report, one set of checkpoints
    assert sorted(p.name for p in (tmp_path / "two" / "pretrain").glob("*.pt")) == [
        "best.pt", "last.pt"]
    # rank 0's checkpoint resumes: a third epoch continues the two-process run
    resumed = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "two"),
                                        "--set", "pretrain.epochs=3"])
    assert resumed.exit_code == 0, resumed.output
    again = history(tmp_path / "two")
    assert len(again) == 3 and again[:2] == twos


def test_each_rank_takes_its_slice_of_every_global_batch():
    rows = torch.arange(7)
    parts = [shard(rows, World(rank, 2)) for rank in range(2)]
    assert parts[0].tolist() == [0, 2, 4, 6] and parts[1].tolist() == [1, 3, 5]
    assert shard(rows, World()).tolist() == rows.tolist()


def test_the_launcher_runs_uservec_under_torchrun():
    command = torchrun_command(2, ["c.toml", "--out", "o"])
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--nproc-per-node=2" in command and command[-4:] == ["run", "c.toml", "--out", "o"]
