"""Task metrics of an exported ONNX graph on a run's real data: what int8 costs, in task units.

Agreement with fp32 (top-10 overlap, argmax) says how often int8 changes an answer; a user of the
bundle needs to know what that does to the metric the task was judged by. :func:`run_evaluator`
rebuilds, from a finished run, the evaluation sets of docs/protocols.md and returns a function that
scores any ONNX graph of that run (fp32 or int8) on them, through onnxruntime only:

* ``next_item`` (P1): test targets of the pretraining view, ranked by the graph's ``user_vector``
  against the pretrained next-item output layer (held out: never a training target);
* every recommendation task (P3): NDCG/HR@k of the graph's query vectors on the task's test users
  (held out: cold-start users the final model never trained on);
* every profile task (P2): accuracy and macro-F1 over every labelled user of the run's plan.
  The exported final model was trained on all of them, so these are in-sample numbers, flagged
  as such: only the difference between fp32 and int8 is meaningful there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import scipy.sparse as sp
import torch

from uservec.export.parity import open_session, session_outputs
from uservec.training.batching import evaluation_examples
from uservec.training.checkpoint import load_checkpoint
from uservec.training.comparison.served_cross_domain import source_bags
from uservec.training.comparison.served_profile import vocabulary_bags
from uservec.training.config import ExperimentConfig
from uservec.training.cross_domain_task import (
    source_inputs,
)
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.classification import accuracy, macro_f1
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit, cross_domain_view
from uservec.training.evaluation.next_item import metrics_from_ranks, rank_of_targets
from uservec.training.evaluation.plan import EvaluationPlan
from uservec.training.fused import profile_output, query_output
from uservec.training.profile_task import (
    profile_inputs,
)
from uservec.training.run_dir import RunDir

log = logging.getLogger(__name__)

#: evaluate(model_path) -> {task: {metric: value, ...}}
Evaluator = Callable[[str | Path], dict[str, dict[str, Any]]]


@dataclass(frozen=True)
class _Profile:
    inputs: np.ndarray  # (N, L)
    codes: np.ndarray  # (N,) index into the head's labels
    n_classes: int
    bags: list[np.ndarray]  # (N,) vocabulary ids of every event of each user (the wide parts')


@dataclass(frozen=True)
class _Recommend:
    split: CrossDomainSplit
    item_vectors: np.ndarray  # (C, D')
    max_len: int


def _bag_rows(bags: sp.csr_matrix) -> list[np.ndarray]:
    """Each row's column ids of a binary (N, V) bag matrix."""
    return [bags.indices[bags.indptr[row] : bags.indptr[row + 1]] for row in range(bags.shape[0])]


def _batched_outputs(session: ort.InferenceSession, items: np.ndarray, names: list[str],
                     batch_size: int = 256, bags: list[np.ndarray] | None = None
                     ) -> dict[str, np.ndarray]:
    """Outputs of ``items`` in batches; ``bags`` as the service sends them (every event)."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    for start in range(0, len(items), batch_size):
        chunk = None if bags is None else bags[start : start + batch_size]
        outputs = session_outputs(session, items[start : start + batch_size], chunk)
        for name in names:
            parts[name].append(outputs[name])
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def next_item_metrics(session: ort.InferenceSession, inputs: np.ndarray, targets: np.ndarray,
                      weight: np.ndarray, bias: np.ndarray, k: int,
                      batch_size: int = 1024) -> dict[str, Any]:
    """P1 HR@k / NDCG@k of the graph's ``user_vector`` scored by the next-item layer (W, b).

    Scored in row blocks: 40k users x a 21k-item vocabulary would be a 3.4 GB score matrix.
    """
    vectors = _batched_outputs(session, inputs, ["user_vector"])["user_vector"]  # (U, D)
    ranks = [
        rank_of_targets(torch.from_numpy(vectors[start : start + batch_size] @ weight.T + bias),
                        torch.from_numpy(targets[start : start + batch_size])).numpy()
        for start in range(0, len(vectors), batch_size)
    ]  # each block (b, V) -> (b,)
    return {**metrics_from_ranks(np.concatenate(ranks), k), "held_out": True}


def profile_metrics(session: ort.InferenceSession, name: str, data: _Profile) -> dict[str, Any]:
    """Accuracy and macro-F1 of a profile head's argmax against the users' labels."""
    output = profile_output(name)
    logits = _batched_outputs(session, data.inputs, [output], bags=data.bags)[output]
    predicted = logits.argmax(axis=1)
    return {
        "accuracy": accuracy(data.codes, predicted),
        "macro_f1": macro_f1(data.codes, predicted, np.arange(data.n_classes)),
        "users": len(data.codes),
        "held_out": False,
    }


def recommend_metrics(session: ort.InferenceSession, name: str, data: _Recommend, k: int
                      ) -> dict[str, Any]:
    """P3 HR/NDCG@k (mean over test users) of a recommendation head's query vectors."""
    from uservec.training.evaluation.ranking_eval import evaluate_cross_domain

    def score(users: np.ndarray) -> np.ndarray:
        items = source_inputs(data.split, users, data.max_len).numpy()  # as the task was trained
        bags = _bag_rows(source_bags(data.split, users))  # the whole source history, as served
        query = _batched_outputs(session, items, [query_output(name)], bags=bags)[
            query_output(name)]
        return query.astype(np.float64) @ data.item_vectors.T.astype(np.float64)  # (N, C)

    result = evaluate_cross_domain(score, data.split, k)
    return {
        f"ndcg@{k}": result[f"ndcg@{k}"]["mean"],
        f"hr@{k}": result[f"hr@{k}"]["mean"],
        "users": result["evaluated_users"],
        "held_out": True,
    }


def next_item_layer(run: RunDir) -> tuple[np.ndarray, np.ndarray] | None:
    """(W (V, D), b (V,)) of the run's pretrained next-item output layer, if it has one."""
    head = load_checkpoint(run.require_encoder()).get("head", {})
    if "output.weight" not in head:
        return None
    return head["output.weight"].float().numpy(), head["output.bias"].float().numpy()


def run_evaluator(
    cfg: ExperimentConfig,
    dataset: PreparedDataset,
    plan: EvaluationPlan,
    tasks: Mapping[str, Any],
    item_vectors: Mapping[str, np.ndarray],
    next_item_layer: tuple[np.ndarray, np.ndarray] | None,
) -> Evaluator:
    """Build the evaluation sets once; the returned function scores one ONNX graph on all of them.

    ``tasks`` maps a bundle task name to its ``TaskExport``; the labels of a profile head define
    the class codes (the head's output order). The users, labels and the P1 pretraining view
    come from the run's ``plan``: the splits the run itself was evaluated on.
    """
    max_len, k = cfg.model.max_len, cfg.eval.k
    declared = {t.name: t for t in cfg.tasks}
    profile: dict[str, _Profile] = {}
    recommend: dict[str, _Recommend] = {}
    all_bags = vocabulary_bags(dataset)  # (U, V) every event of every user
    for name, task in tasks.items():
        spec = declared.get(name)
        if spec is None:
            log.warning("task %s is not declared in the run's config; not evaluated", name)
            continue
        if task.kind == "profile":
            labels = plan.profile[name].labels
            order = {label: i for i, label in enumerate(task.labels)}
            known = np.array([label in order for label in labels.labels])
            users = labels.users[known]
            profile[name] = _Profile(
                inputs=profile_inputs(dataset, users, max_len).numpy(),  # as the task was trained
                codes=np.array([order[label] for label in labels.labels[known]]),
                n_classes=len(task.labels),
                bags=_bag_rows(all_bags[users]),
            )
        else:
            recommend[name] = _Recommend(cross_domain_view(dataset, plan.cross_domain[name]),
                                         np.asarray(item_vectors[name]), max_len)
    p1 = None
    if next_item_layer is not None:
        _, inputs, targets = evaluation_examples(plan.pretraining_view(dataset), "test", max_len)
        p1 = (inputs, targets, *next_item_layer)

    def evaluate(model_path: str | Path) -> dict[str, dict[str, Any]]:
        session = open_session(model_path)  # one session serves every evaluation set
        result: dict[str, dict[str, Any]] = {}
        if p1 is not None:
            result["next_item"] = next_item_metrics(session, *p1, k=k)
        for name, data in profile.items():
            result[name] = profile_metrics(session, name, data)
        for name, rec in recommend.items():
            result[name] = recommend_metrics(session, name, rec, k)
        return result

    return evaluate


def evaluator_of_run(
    run: RunDir, cfg: ExperimentConfig, dataset: PreparedDataset, plan: EvaluationPlan,
    tasks: Mapping[str, Any], item_vectors: Mapping[str, np.ndarray],
) -> Evaluator:
    """:func:`run_evaluator` on a run's own evaluation data: its P1 view and next-item layer,
    read from the run folder alone.

    One assembly for both callers: the export's fp32-vs-int8 check (item vectors from the fused
    model) and ``uservec bench``'s int8 suite (item vectors from the bundle on disk).
    """
    return run_evaluator(cfg, dataset, plan, tasks, item_vectors, next_item_layer(run))


def metric_change(fp32: Mapping[str, Mapping[str, Any]], int8: Mapping[str, Mapping[str, Any]]
                  ) -> dict[str, dict[str, float]]:
    """int8 minus fp32, per task and numeric metric (in metric units; x100 = points)."""
    change: dict[str, dict[str, float]] = {}
    for task, metrics in fp32.items():
        change[task] = {
            metric: float(int8[task][metric]) - float(value)
            for metric, value in metrics.items()
            if isinstance(value, float) and metric in int8.get(task, {})
        }
    return change


def compare_on_tasks(evaluate: Evaluator) -> Callable[[Path, Path], dict[str, Any]]:
    """``(fp32_path, int8_path) -> {"fp32": ..., "int8": ..., "change": int8 - fp32}``."""

    def compare(fp32_path: Path, int8_path: Path) -> dict[str, Any]:
        fp32, int8 = evaluate(fp32_path), evaluate(int8_path)
        return {"fp32": fp32, "int8": int8, "change": metric_change(fp32, int8)}

    return compare


def evaluator_for_bundle(bundle_dir: str | Path) -> tuple[Evaluator, np.ndarray] | None:
    """The evaluator of the run a bundle was exported from, plus real calibration sequences.

    None when the bundle does not name its run (``config.source_run``) or that run is not on this
    machine: a bundle carries no labelled data, only the run does.
    """
    from uservec.contract.manifest import read_manifest
    from uservec.export.calibration import calibration_items

    bundle_dir = Path(bundle_dir)
    manifest = read_manifest(bundle_dir)
    source = manifest.config.get("source_run")
    if not source or not RunDir(source).config_path.is_file():
        return None
    run = RunDir(source)
    cfg = run.read_config()
    dataset = run.load_dataset()
    tasks = {task.name: task for task in manifest.tasks}
    vectors = {task.name: np.load(bundle_dir / task.items_file) for task in manifest.tasks
               if task.kind == "recommend" and task.items_file}
    evaluate = evaluator_of_run(run, cfg, dataset, run.plan(cfg, dataset), tasks, vectors)
    return evaluate, calibration_items(dataset, cfg.model.max_len, cfg.seed)
