"""Every downstream task of an experiment: methods + baselines on the same folds/users -> results.

For each task declared in the config (``cfg.tasks``), on the splits of the evaluation plan
(:func:`training.evaluation.plan.plan_evaluation`):

* profile (P2): the baselines (majority, lr, lr_bal) and every method of ``adapt.methods``
  on the five P2 folds, in every label regime of ``eval.label_fractions`` (the labelled share
  of each training fold; :mod:`training.comparison.profile`);
* cross-domain (P3): the baselines (popularity, cooc, ridge) and every method on the P3 test
  users (:mod:`training.comparison.cross_domain`).

Every method reports through the evaluation path the baselines use, beside its trainable
parameter count and training time, with paired differences (per fold / per user) against the
strongest baseline and against the adapter. Then one final model per task
(``adapt.final_method``, on the *shared* backbone, trained on every labelled / training
user) is written to ``OUT/tasks/<task>/final.pt`` for export::

    results = run_tasks(cfg, dataset, "runs/ml100k/pretrain/best.pt", Path("runs/ml100k"))
    plot_results(results, Path("runs/ml100k"))  # training.report.plots

The encoder checkpoint of a P3 task must come from a pretraining that never saw the test users'
target events (the plan's pretraining view); P2 pretraining on every user's behaviour is allowed
but transductive (docs/protocols.md#p2-user-profile-prediction).
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from uservec.training.baselines.pooled import PooledRows
from uservec.training.comparison.cross_domain import run_cross_domain_task
from uservec.training.comparison.final import TaskContext
from uservec.training.comparison.profile import run_profile_task
from uservec.training.config import ExperimentConfig
from uservec.training.cross_domain_task import source_inputs
from uservec.training.data.dataset import PreparedDataset
from uservec.training.device import resolve_device, using_device
from uservec.training.evaluation.cross_domain_split import cross_domain_view
from uservec.training.evaluation.errors import LeakError
from uservec.training.evaluation.plan import EvaluationPlan, plan_evaluation
from uservec.training.evaluation.results import TaskResult, TaskResults
from uservec.training.pretrain import torch_threads
from uservec.training.profile_task import profile_inputs
from uservec.training.task_loop import batched_forward
from uservec.training.task_network import Pretrained, load_pretrained
from uservec.training.task_selection import TaskFit

logger = logging.getLogger(__name__)

#: users whose outputs are fingerprinted to check that later tasks never change earlier ones
_PROBE_USERS = 64


def run_tasks(
    cfg: ExperimentConfig, dataset: PreparedDataset, encoder_checkpoint: str | Path,
    out_dir: Path, plan: EvaluationPlan | None = None,
    pooled: dict[str, PooledRows] | None = None,
) -> TaskResults:
    """Train and evaluate every task x method (module docstring) on the plan's splits.

    Without a ``plan`` it is made here (:func:`plan_evaluation`). Task fits use
    ``pretrain.num_threads`` torch threads, like pretraining: with torch's default (one per
    core) runs sharing the cores oversubscribe them and spin-wait. ``pooled`` (by profile task:
    a corpus' labelled users) adds the pooled bag baselines.
    """
    device = resolve_device(cfg.pretrain.device)
    with torch_threads(cfg.pretrain.num_threads), using_device(device):
        return _run_tasks(cfg, dataset, encoder_checkpoint, out_dir, plan, pooled or {})


def _run_tasks(
    cfg: ExperimentConfig, dataset: PreparedDataset, encoder_checkpoint: str | Path,
    out_dir: Path, plan: EvaluationPlan | None, pooled: dict[str, PooledRows],
) -> TaskResults:
    started = time.perf_counter()
    plan = plan if plan is not None else plan_evaluation(cfg, dataset)
    settings = cfg.adapt
    shared = load_pretrained(encoder_checkpoint)
    check_encoder_view(shared, plan, dataset, encoder_checkpoint)
    # evaluation fits start from this untouched copy; final models go onto ``shared.encoder``
    pristine = dataclasses.replace(shared, encoder=copy.deepcopy(shared.encoder))
    context = TaskContext(dataset, pristine, shared, settings, cfg.model.max_len, cfg.seed,
                          cfg.eval.k, pooled)
    tasks: dict[str, TaskResult] = {}
    probes: dict[str, tuple[Callable[[], torch.Tensor], torch.Tensor]] = {}
    for task in cfg.tasks:
        task_start = time.perf_counter()
        task_dir = Path(out_dir) / "tasks" / task.name
        result: TaskResult
        if task.kind == "profile":
            result, final = run_profile_task(task, plan.profile[task.name], context, task_dir)
        else:
            split = cross_domain_view(dataset, plan.cross_domain[task.name])
            result, final = run_cross_domain_task(task, split, context, task_dir)
        probe = _output_probe(final, dataset, context.max_len)
        probes[task.name] = (probe, probe())
        tasks[task.name] = dataclasses.replace(
            result, seconds=round(time.perf_counter() - task_start, 1))
        logger.info("task %s done in %.0fs", task.name, tasks[task.name].seconds)
    no_forgetting = all(torch.equal(fn(), before) for fn, before in probes.values())
    if not no_forgetting:
        raise AssertionError("adding a task changed an earlier task's outputs")
    return TaskResults(dataclasses.asdict(settings), str(encoder_checkpoint), tasks,
                       no_forgetting, round(time.perf_counter() - started, 1))


def check_encoder_view(pretrained: Pretrained, plan: EvaluationPlan, dataset: PreparedDataset,
                       checkpoint: str | Path) -> None:
    """Refuse an encoder that was not pretrained on this experiment's pretraining view.

    The split code guarantees that no task *head* reads a test user's hidden target events; the
    encoder is the other route in. One pretrained on the whole dataset (or on other data) has
    seen those events, so its P3 numbers would be leaked: its recorded dataset fingerprint must
    be the view's, which differs from the dataset's whenever events are hidden.
    """
    expected = plan.pretraining_view(dataset).fingerprint
    recorded = pretrained.meta.get("dataset_fingerprint")
    if recorded != expected:
        raise LeakError(
            f"{checkpoint}: the encoder was pretrained on data with fingerprint {recorded!r}, "
            f"not on this experiment's pretraining view ({expected!r}, which hides every P3 "
            "target's held-out events); pretrain it with `uservec run` on this config"
        )


def _output_probe(fit: TaskFit, dataset: PreparedDataset, max_len: int
                  ) -> Callable[[], torch.Tensor]:
    """A function recomputing the final model's outputs on a few users (no-forgetting check)."""
    users = np.arange(min(_PROBE_USERS, dataset.num_users))
    if fit.split is not None:
        inputs = source_inputs(fit.split, users, max_len)
    else:
        inputs = profile_inputs(dataset, users, max_len)

    def probe() -> torch.Tensor:
        fit.network.eval()
        return batched_forward(fit.network, inputs)

    return probe
