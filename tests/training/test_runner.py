"""A tiny end-to-end `uservec run` on generated data: prepare, pretrain, tasks, export, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from export.verify import load_and_verify
from uservec.cli import main

CONFIG = """
name = "tiny-e2e"
[data]
format = "synthetic"
synthetic_users = 160
synthetic_items = 60
synthetic_domains = 2
[model]
dim = 16
dilations = [1, 2]
max_len = 12
[pretrain]
epochs = 2
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
[extra.adapt]
methods = ["adapter"]
max_epochs = 2
[extra.export]
enabled = true
"""


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    config = root / "tiny.toml"
    config.write_text(CONFIG)
    out = root / "out"
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_report_has_every_section_with_numbers(run_dir: Path):
    report = json.loads((run_dir / "report.json").read_text())
    assert report["dataset"]["users"] == 160
    assert set(report["next_item"]["methods"]) == {"nextitnet", "popularity"}
    for metrics in report["next_item"]["methods"].values():
        assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    tasks = report["tasks"]["tasks"]
    assert set(tasks) == {"gender", "cold"}
    gender = tasks["gender"]["regimes"]["full"]["methods"]
    assert {"majority", "lr", "lr_bal", "adapter"} <= set(gender)
    assert gender["adapter"]["trainable_parameters"] > 0
    cold = tasks["cold"]["methods"]
    assert {"popularity", "cooc", "ridge", "adapter"} <= set(cold)
    # the cross-domain view hid the test users' target events from pretraining
    assert report["pretraining_view"]["hidden_events"] > 0
    assert "## Task gender" in (run_dir / "report.md").read_text()


def test_the_run_exports_a_bundle_that_verifies(run_dir: Path):
    manifest = load_and_verify(run_dir / "bundle")
    assert {t.name for t in manifest.tasks} == {"gender", "cold"}
    assert max(manifest.parity["fp32"]["max_abs_diff"].values()) <= 1e-4


def test_rerun_resumes_from_the_checkpoint_and_reproduces_the_metrics(run_dir: Path):
    before = json.loads((run_dir / "report.json").read_text())
    result = CliRunner().invoke(main, ["run", str(run_dir.parent / "tiny.toml"),
                                       "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    after = json.loads((run_dir / "report.json").read_text())
    assert after["next_item"]["methods"] == before["next_item"]["methods"]
    assert after["tasks"]["tasks"]["gender"]["regimes"]["full"]["methods"]["adapter"][
        "accuracy"] == before["tasks"]["tasks"]["gender"]["regimes"]["full"]["methods"][
        "adapter"]["accuracy"]
