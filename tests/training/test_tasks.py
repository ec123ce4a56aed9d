from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
from data_helpers import build_dataset

from uservec.training.adapt import METHODS
from uservec.training.checkpoint import load_checkpoint, save_checkpoint
from uservec.training.config import (
    AdaptSettings,
    EvalConfig,
    ExperimentConfig,
    ModelConfig,
    PretrainConfig,
    TaskConfig,
)
from uservec.training.evaluation.errors import LeakError
from uservec.training.evaluation.plan import plan_evaluation, pretraining_view
from uservec.training.model import NextItemHead, NextItNet
from uservec.training.report.headline import headline
from uservec.training.report.markdown import render_task
from uservec.training.report.plots import plot_results
from uservec.training.tasks import run_tasks

MODEL = ModelConfig(dim=16, dilations=(1, 2), max_len=8)


def tiny_two_domain(num_users: int = 120, seed: int = 0):
    """Users of gender M mostly see items 0-5, F items 6-11, in a source domain A and target T."""
    rng = np.random.default_rng(seed)
    users, items, domains, times = [], [], [], []
    genders = {}
    for user in range(1, num_users + 1):
        gender = "M" if rng.random() < 0.6 else "F"
        genders[str(user)] = gender
        offset = 0 if gender == "M" else 6
        clock = 0
        for domain, count in (("A", int(rng.integers(5, 10))), ("T", int(rng.integers(1, 4)))):
            for _ in range(count):
                item = offset + int(rng.integers(0, 6)) if rng.random() < 0.8 else int(
                    rng.integers(0, 12))
                users.append(user)
                items.append(f"{domain.lower()}{item}")
                domains.append(domain)
                times.append(clock)
                clock += 1
    frame = pd.DataFrame({"gender": pd.Series(genders)})
    return build_dataset(users, items, domains, times, users=frame, name="tiny-tasks")


def save_random_checkpoint(path, vocab_size: int, fingerprint: str) -> None:
    """A checkpoint in the pretraining format, with random weights (shape is what matters),
    recording the fingerprint of the data it claims to be pretrained on."""
    torch.manual_seed(0)
    encoder = NextItNet(vocab_size, MODEL.dim, MODEL.dilations, MODEL.kernel_size)
    head = NextItemHead(MODEL.dim, vocab_size)
    save_checkpoint(path, {
        "model": encoder.state_dict(), "head": head.state_dict(),
        "config": {"model": dataclasses.asdict(MODEL)}, "vocab_size": vocab_size,
        "dataset_fingerprint": fingerprint,
    })


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("tasks")
    dataset = tiny_two_domain()
    cfg = tiny_config()
    save_random_checkpoint(out / "encoder.pt", dataset.vocab.size,
                           pretraining_view(cfg, dataset).fingerprint)
    return run_tasks(cfg, dataset, out / "encoder.pt", out), out, dataset


def tiny_config() -> ExperimentConfig:
    return ExperimentConfig(
        name="tiny",
        model=MODEL,
        eval=EvalConfig(label_fractions=(0.1, 1.0)),
        tasks=(
            TaskConfig("gender", "profile", attribute="gender"),
            TaskConfig("target", "cross_domain", target_domain="T"),
        ),
        adapt=AdaptSettings(max_epochs=1, patience=1, bottleneck_grid=(4,)),
    )


def test_an_encoder_pretrained_on_the_held_out_events_is_refused(tmp_path):
    """The heads never read a test user's target events; the encoder must not have either."""
    dataset = tiny_two_domain()
    save_random_checkpoint(tmp_path / "encoder.pt", dataset.vocab.size, dataset.fingerprint)
    with pytest.raises(LeakError, match="pretraining view"):
        run_tasks(tiny_config(), dataset, tmp_path / "encoder.pt", tmp_path)


#: the wide & deep rows every task reports beside the methods
SERVED_ROWS = ("wide", "wide+deep", "served")


def test_profile_task_reports_every_method_and_baseline_in_both_regimes(results):
    typed, _, _ = results
    task = typed.to_json()["tasks"]["gender"]
    assert task["kind"] == "profile" and task["classes"] == ["F", "M"]
    assert sum(task["label_distribution"].values()) == task["labelled_users"] == 120
    assert list(task["regimes"]) == ["0.1", "1.0"]
    for regime in task["regimes"].values():
        methods = regime["methods"]
        assert set(methods) == {"majority", "lr", "lr_bal", *METHODS, *SERVED_ROWS}
        for method in METHODS:
            entry = methods[method]
            assert len(entry["per_fold"]) == 5
            assert 0.0 <= entry["accuracy"]["mean"] <= 1.0
            assert entry["trainable_parameters"] > 0 and entry["seconds"] >= 0
            assert all("hyperparameters" in row for row in entry["per_fold"])
            rules = entry["decisions"]  # accuracy from one rule, macro-F1 from the other
            assert entry["accuracy"] == {k: rules["prior_adjusted"]["accuracy"][k]
                                         for k in ("mean", "std")}
            assert entry["macro_f1"]["mean"] == rules["as_trained"]["macro_f1"]["mean"]
        for metric in ("accuracy", "macro_f1"):
            strongest = regime["strongest_baseline"][metric]
            paired = regime["paired_vs_baseline"]["adapter"][metric]
            assert paired["vs"] == strongest
            expected = np.mean([a[metric] - b[metric] for a, b in zip(
                methods["adapter"]["per_fold"], methods[strongest]["per_fold"], strict=True)])
            assert paired["diff_mean"] == pytest.approx(expected)
        assert set(regime["paired_adapter_vs"]) == {"head-only", "fine-tune-all", "scratch",
                                                    *SERVED_ROWS}
        served = regime["served"]
        assert served["kind"] in ("wide", "deep", "wide+deep")
        assert len(served["per_fold_kinds"]) == 5
        for metric in ("accuracy", "macro_f1"):
            versus = served["vs_strongest_baseline"][metric]
            assert versus["baseline"] == regime["strongest_baseline"][metric]
            expected = np.mean([a[metric] - b[metric] for a, b in zip(
                methods["served"]["per_fold"], methods[versus["baseline"]]["per_fold"],
                strict=True)])
            assert versus["paired_diff"] == pytest.approx(expected)
    assert list(task["served"]) == ["0.1", "1.0"]
    assert task["served"]["1.0"] == task["regimes"]["1.0"]["served"]
    full, low = task["regimes"]["1.0"], task["regimes"]["0.1"]
    assert max(low["labelled_rows_per_fold"]) < min(full["labelled_rows_per_fold"])
    assert (full["methods"]["adapter"]["trainable_parameters"]
            < full["methods"]["fine-tune-all"]["trainable_parameters"])


def test_cross_domain_task_reports_methods_beside_baselines(results):
    typed, _, _ = results
    task = typed.to_json()["tasks"]["target"]
    assert task["kind"] == "cross_domain" and task["candidates"] == 12
    assert set(task["methods"]) == {"popularity", "cooc", "ridge", *METHODS, *SERVED_ROWS}
    served = task["served"]["1.0"]
    assert set(served) == {"kind", "metrics", "vs_strongest_baseline"}
    assert served["metrics"]["ndcg@10"] == pytest.approx(task["methods"]["served"]["ndcg@10"]
                                                         ["mean"])
    assert task["wide"]["float32_bytes"] <= 32 * 2**20
    users = task["split"]["test_users"]
    for name, entry in task["methods"].items():
        assert entry["evaluated_users"] == users, name
        assert "per_user" not in entry
    assert task["strongest_baseline"] in ("popularity", "cooc", "ridge")
    paired = task["paired_vs_baseline"]["adapter"]["ndcg@10"]
    assert paired["users"] == users
    assert paired["wins"] + paired["losses"] + paired["ties"] == users


def test_final_models_are_saved_for_export(results):
    typed, out, dataset = results
    result = typed.to_json()
    profile = load_checkpoint(out / "tasks" / "gender" / "final.pt")
    assert profile["labels"] == ["F", "M"] and profile["method"] == "adapter"
    assert profile["spec"]["bottleneck"] == 4
    assert profile["patch_state"] and all(".patches.gender." in k or ".task_norms.gender." in k
                                          for k in profile["patch_state"])
    assert profile["head_state"]["linear.weight"].shape == (2, MODEL.dim)
    assert result["tasks"]["gender"]["final"]["trained_on_users"] == 120
    counts = result["tasks"]["gender"]["label_distribution"]
    assert profile["class_prior"] == [counts["F"] / 120, counts["M"] / 120]
    # the served kind's training power: the wide part's when the bag model alone is served
    served = result["tasks"]["gender"]["served"]["1.0"]["kind"]
    assert profile["served_kind"] == served
    assert (profile["wide"] is None) == (served == "deep")
    power = profile["wide"]["power"] if served == "wide" else profile["hyperparameters"][
        "class_weight"]
    assert profile["prior_power"] == power
    target = load_checkpoint(out / "tasks" / "target" / "final.pt")
    keys = target["candidate_keys"]
    assert len(keys) == 12 and all(key.startswith("T::") for key in keys)
    assert target["head_state"]["item_embedding"].shape == (12, MODEL.dim)
    assert sorted(target["popularity_ranking"].tolist()) == list(range(12))
    keep = target["source_keep"]
    assert keep.shape == (dataset.vocab.size,)
    assert not any(keep[dataset.vocab.id_of(key)] for key in keys)
    assert result["no_forgetting"] is True


def test_plots_are_written(results):
    result, out, _ = results
    paths = plot_results(result, out)
    assert {p.name for p in paths} == {"gender.png", "target.png", "label_efficiency.png"}
    assert all(p.stat().st_size > 1000 for p in paths)


def test_task_fits_use_the_configured_threads_and_restore_them(monkeypatch, tmp_path):
    from uservec.training import tasks as tasks_module

    seen: list[int] = []
    monkeypatch.setattr(tasks_module, "_run_tasks",
                        lambda *_args: seen.append(torch.get_num_threads()) or {})
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        cfg = ExperimentConfig(name="x", pretrain=PretrainConfig(num_threads=1))
        run_tasks(cfg, tiny_two_domain(), tmp_path / "encoder.pt", tmp_path)
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_regime_the_plan_skipped_is_reported_not_run(tmp_path):
    """run_tasks evaluates the plan's regimes only, and says in the report why one is missing."""
    dataset = tiny_two_domain()
    cfg = dataclasses.replace(
        tiny_config(), tasks=(TaskConfig("gender", "profile", attribute="gender"),),
        adapt=AdaptSettings(methods=("head-only",), final_method="head-only", max_epochs=1,
                            patience=1))
    plan = plan_evaluation(cfg, dataset)
    split = plan.profile["gender"]
    reason = "skipped: fold 0 of the 0.1 regime: 9 labelled users (F 3, M 6) cannot ..."
    plan.profile["gender"] = dataclasses.replace(
        split, regimes={"1.0": split.regimes["1.0"]}, skipped={"0.1": reason})
    save_random_checkpoint(tmp_path / "encoder.pt", dataset.vocab.size,
                           pretraining_view(cfg, dataset, plan).fingerprint)
    typed = run_tasks(cfg, dataset, tmp_path / "encoder.pt", tmp_path, plan=plan)
    task = typed.tasks["gender"]
    assert list(task.regimes) == ["1.0"]
    as_json = typed.to_json()["tasks"]["gender"]
    assert as_json["skipped_regimes"] == {"0.1": reason}
    assert list(as_json)[-3:] == ["skipped_regimes", "final", "seconds"]
    markdown = "\n".join(render_task("gender", task))
    assert f"gender, 10% of the labels)\n\nNot evaluated: {reason}" in markdown
    assert [p.name for p in plot_results(typed, tmp_path)] == ["gender.png"]


def test_task_results_keep_the_report_json_layout_readers_rely_on(results):
    """report.json's task sections, key by key and in order, as written before the results were
    typed (the docs generator and the comparison scripts read them)."""
    typed, _, _ = results
    result = typed.to_json()
    assert list(result) == ["settings", "encoder_checkpoint", "tasks", "no_forgetting", "seconds"]
    profile, target = result["tasks"]["gender"], result["tasks"]["target"]
    assert list(profile) == ["kind", "protocol", "attribute", "classes", "label_distribution",
                             "labelled_users", "regimes", "served", "final", "seconds"]
    regime = profile["regimes"]["1.0"]
    assert list(regime) == ["labelled_rows_per_fold", "methods", "strongest_baseline",
                            "paired_vs_baseline", "paired_adapter_vs", "served"]
    methods = regime["methods"]
    assert list(methods["majority"]) == ["per_fold", "accuracy", "macro_f1", "seconds"]
    assert list(methods["lr"]) == ["per_fold", "accuracy", "macro_f1", "seconds", "chosen_c"]
    assert list(methods["adapter"]) == ["per_fold", "accuracy", "macro_f1", "decisions",
                                        "trainable_parameters", "encoder_parameters", "seconds",
                                        "seconds_per_fold"]
    assert list(methods["adapter"]["per_fold"][0]) == [
        "fold", "train_rows", "test_rows", "accuracy", "macro_f1", "trainable_parameters",
        "seconds", "hyperparameters"]
    assert list(target) == ["kind", "protocol", "target_domain", "k", "split", "candidates",
                            "methods", "strongest_baseline", "paired_vs_baseline",
                            "paired_adapter_vs", "served", "wide", "final", "seconds"]
    ranking = ["hr@10", "recall@10", "ndcg@10", "evaluated_users", "left_out_users"]
    assert list(target["methods"]["cooc"]) == [*ranking, "seconds"]
    assert list(target["methods"]["ridge"]) == [*ranking, "lambda", "validation_ndcg", "seconds"]
    assert list(target["methods"]["adapter"]) == [
        *ranking, "trainable_parameters", "encoder_parameters", "seconds", "hyperparameters",
        "tuning"]
    assert list(target["final"]) == ["method", "hyperparameters", "trainable_parameters",
                                     "encoder_parameters", "seconds", "tuning", "path",
                                     "trained_on_users"]


def test_the_headline_puts_each_network_beside_the_strongest_baseline(results):
    typed, _, _ = results
    report = {"dataset": {"name": "tiny"}, "timings": {"total_s": 1.0}, "tasks": typed,
              "next_item": {"k": 10, "ndcg_ratio_vs_popularity": 2.0, "methods": {
                  "nextitnet": {"ndcg@10": 0.123456}, "popularity": {"ndcg@10": 0.0617}}}}
    line = headline(report)
    assert line["nextitnet_ndcg@10"] == 0.1235 and line["ndcg_ratio"] == 2.0
    regime = typed.tasks["gender"].regimes["1.0"]
    for metric, base in regime.strongest_baseline.items():
        assert list(line["gender"][metric]) == [*METHODS, "served", base]
        assert line["gender"][metric][base] == round(regime.methods[base].metric(metric).mean, 4)
    target = typed.tasks["target"]
    assert list(line["target"]["ndcg@10"]) == list(target.methods)
