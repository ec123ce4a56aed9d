"""A tiny end-to-end `uservec run` on generated data: prepare, pretrain, tasks, export, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from uservec.cli import main
from uservec.contract.verify import load_and_verify

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
bag_weight = 0.5
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
max_epochs = 2
readout = "mean"
[export]
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
    assert report["environment"]["cpu"] and report["environment"]["torch"]
    assert set(report["next_item"]["methods"]) == {"nextitnet", "popularity"}
    for metrics in report["next_item"]["methods"].values():
        assert 0.0 <= metrics["ndcg@10"] <= metrics["hr@10"] <= 1.0
    tasks = report["tasks"]["tasks"]
    assert set(tasks) == {"gender", "cold"}
    gender = tasks["gender"]["regimes"]["1.0"]["methods"]
    assert {"majority", "lr", "lr_bal", "adapter"} <= set(gender)
    assert gender["adapter"]["trainable_parameters"] > 0
    cold = tasks["cold"]["methods"]
    assert {"popularity", "cooc", "ridge", "adapter"} <= set(cold)
    # the cross-domain view hid the test users' target events from pretraining
    assert report["pretraining_view"]["hidden_events"] > 0
    assert "## Task gender" in (run_dir / "report.md").read_text()


def test_report_has_the_peak_memory_of_every_stage(run_dir: Path):
    memory = json.loads((run_dir / "report.json").read_text())["memory"]
    peaks = memory["peak_rss_mb"]
    assert {"prepare", "pretrain", "tasks", "export", "p3 domain1: ridge",
            "p2 gender 1.0: baselines"} <= set(peaks)
    # a stage holds its inner stages: tasks' peak is at least each baseline's
    assert peaks["tasks"] >= peaks["p3 domain1: ridge"] > 0
    assert "## Peak memory (MiB)" in (run_dir / "report.md").read_text()


def test_the_run_exports_a_bundle_that_verifies(run_dir: Path):
    manifest = load_and_verify(run_dir / "bundle")
    assert {t.name for t in manifest.tasks} == {"gender", "cold"}
    assert max(manifest.parity["fp32"]["max_abs_diff"].values()) <= 1e-4
    gender = next(t for t in manifest.tasks if t.name == "gender")
    distribution = json.loads((run_dir / "report.json").read_text())["tasks"]["tasks"][
        "gender"]["label_distribution"]
    total = sum(distribution.values())
    assert gender.class_prior == pytest.approx([distribution[c] / total for c in gender.labels])
    assert gender.prior_power is not None  # the prior-adjusted decision can be served
    # how bench finds the run's data, from any current directory
    assert manifest.config["source_run"] == str(run_dir.resolve())


def test_rerun_resumes_from_the_checkpoint_and_reproduces_the_metrics(run_dir: Path):
    before = json.loads((run_dir / "report.json").read_text())
    result = CliRunner().invoke(main, ["run", str(run_dir.parent / "tiny.toml"),
                                       "--out", str(run_dir)])
    assert result.exit_code == 0, result.output
    after = json.loads((run_dir / "report.json").read_text())
    # pretraining is bitwise deterministic, so equal metrics alone would not show a resume: the
    # per-epoch history (with its wall-clock seconds) must be the checkpoint's, not a new run's
    assert after["pretrain"]["history"] == before["pretrain"]["history"]
    assert after["next_item"]["methods"] == before["next_item"]["methods"]
    assert after["tasks"]["tasks"]["gender"]["regimes"]["1.0"]["methods"]["adapter"][
        "accuracy"] == before["tasks"]["tasks"]["gender"]["regimes"]["1.0"]["methods"][
        "adapter"]["accuracy"]


def test_int8_export_reports_task_metrics_measured_like_the_run(run_dir: Path, tmp_path: Path):
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out", str(tmp_path / "b"),
                                       "--int8"])
    assert result.exit_code == 0, result.output
    assert "fp32 parity: max abs diff" in result.output and "int8 (static): " in result.output
    manifest = json.loads((tmp_path / "b" / "manifest.json").read_text())
    measured = manifest["parity"]["int8"]["task_metrics"]
    assert set(measured["fp32"]) == {"next_item", "gender", "cold"} == set(measured["int8"])
    report = json.loads((run_dir / "report.json").read_text())
    # the fp32 graph on the protocol's own evaluation data reproduces the run's numbers: the
    # int8 change is measured on exactly what docs/results.md reports
    p1 = report["next_item"]["methods"]["nextitnet"]
    assert measured["fp32"]["next_item"]["ndcg@10"] == pytest.approx(p1["ndcg@10"], abs=1e-6)
    # the graph serves the head the run chose on validation users (wide, deep or both), fed the
    # bag of every source event as the service feeds it: it scores what the served block reports
    served = report["tasks"]["tasks"]["cold"]["served"]["1.0"]
    assert measured["fp32"]["cold"]["ndcg@10"] == pytest.approx(served["metrics"]["ndcg@10"],
                                                               abs=1e-6)
    assert measured["fp32"]["cold"]["held_out"] and not measured["fp32"]["gender"]["held_out"]
    change = measured["change"]["gender"]["accuracy"]
    assert change == pytest.approx(measured["int8"]["gender"]["accuracy"]
                                   - measured["fp32"]["gender"]["accuracy"])

    # the bench finds the run through the bundle and measures both int8 methods on its data
    bench = CliRunner().invoke(main, ["bench", "--bundle", str(tmp_path / "b"), "--only", "int8",
                                      "--quick", "--out", str(tmp_path / "bench")])
    assert bench.exit_code == 0, bench.output
    int8 = json.loads((tmp_path / "bench" / "bench.json").read_text())["int8"]
    assert int8["task_metric"]["fp32"] == measured["fp32"]
    for method in ("static", "dynamic"):
        assert set(int8["methods"][method]["task_metric_change"]) == set(measured["fp32"])
    assert "held out" in (tmp_path / "bench" / "bench.md").read_text()


def test_export_refuses_a_run_whose_prepared_data_is_not_the_encoders(run_dir: Path,
                                                                      tmp_path: Path):
    """The bundle ships the run's vocabulary: other data would misalign every id."""
    import shutil

    from uservec.training.config import DataConfig
    from uservec.training.data.prepare import load_raw, prepare
    from uservec.training.run_dir import RunDir

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    other = DataConfig(format="synthetic", synthetic_users=170, synthetic_items=60)
    RunDir(copy).save_dataset(prepare(load_raw(other)))
    result = CliRunner().invoke(main, ["export", str(copy), "--out", str(tmp_path / "b")])
    assert result.exit_code == 1
    assert "not what the encoder was trained on" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "b").exists()


def test_the_report_states_what_the_protocols_ask_it_to(run_dir: Path):
    """Say that P2 is transductive and which backbone P3 used
    (docs/protocols.md#p2-user-profile-prediction, docs/protocols.md#p3-cross-domain-cold-start)."""
    notes = json.loads((run_dir / "report.json").read_text())["protocol_notes"]
    assert any("transductive" in note for note in notes)
    assert any("one backbone for every task (domain1)" in note for note in notes)
    assert any("P1 is evaluated on the pretraining view" in note for note in notes)
    assert "## Protocol notes" in (run_dir / "report.md").read_text()


def test_a_dataset_without_timestamps_is_said_to_follow_file_order(tiny_dataset):
    import dataclasses

    from uservec.training.config import ExperimentConfig
    from uservec.training.runner import protocol_notes

    cfg = ExperimentConfig(name="x")
    assert protocol_notes(cfg, tiny_dataset, tiny_dataset) == []
    unordered = dataclasses.replace(
        tiny_dataset, settings={**tiny_dataset.settings, "info": {"timestamps": "file order"}})
    (note,) = protocol_notes(cfg, unordered, unordered)
    assert "follow file order" in note


def test_export_to_a_path_under_a_file_is_one_line_not_a_traceback(run_dir: Path, tmp_path: Path):
    (tmp_path / "file").write_text("x")
    result = CliRunner().invoke(main, ["export", str(run_dir), "--out",
                                       str(tmp_path / "file" / "bundle")])
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and "Traceback" not in result.output


def test_probe_fits_the_baselines_on_each_frozen_readout(run_dir: Path):
    result = CliRunner().invoke(main, ["probe", str(run_dir)])
    assert result.exit_code == 0, result.output
    probe = json.loads((run_dir / "probe.json").read_text())
    assert set(probe["tasks"]) == {"gender"}
    readouts = probe["tasks"]["gender"]
    assert set(readouts) == {"majority", "last", "mean", "item-mean", "tfidf-svd", "tfidf",
                             "tfidf+mean"}
    assert probe["tasks_low_label"] == {}  # the task declares low_label = false
    for scores in readouts.values():
        assert 0.0 <= scores["lr_accuracy"]["mean"] <= 1.0
        assert 0.0 <= scores["lr_bal_macro_f1"]["mean"] <= 1.0
    assert len(readouts["tfidf+mean"]["minus_tfidf"]["lr_accuracy"]["per_fold"]) == 5
    assert "| gender | mean |" in result.output
    # the cross-domain task: ridge on the source bag vs ridge on the frozen source vectors
    (name, models), = probe["cross_domain"].items()
    assert set(models) == {"ridge", "ridge-on-mean", "ridge-on-bag+mean", "ridge-on-item-mean"}
    assert f"| {name} | ridge-on-mean |" in result.output
