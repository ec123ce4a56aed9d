"""Probe every task of a finished run on the splits of its evaluation plan."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from uservec.training.config import ExperimentConfig
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.cross_domain_split import cross_domain_view
from uservec.training.evaluation.kinds import FULL_REGIME, regime_key
from uservec.training.evaluation.plan import EvaluationPlan, plan_evaluation
from uservec.training.model import NextItNet
from uservec.training.probe.cross_domain import RankingProbeRow, probe_cross_domain
from uservec.training.probe.profile import ProbeRow, probe_attribute
from uservec.training.probe.readouts import PROBE_READOUTS, frozen_vectors, tfidf_svd
from uservec.training.profile_task import profile_inputs

#: the regime the probe's low-label rows come from (10% of each training fold)
LOW = regime_key(0.1)


@dataclass(frozen=True)
class ProbeReport:
    """``probe.json``: per profile task and regime the probe rows, per P3 task the ridge rows."""

    run: str
    max_len: int
    #: profile task -> readout -> row (full labels)
    tasks: dict[str, dict[str, ProbeRow]]
    cross_domain: dict[str, dict[str, RankingProbeRow]]
    #: profile task -> readout -> row on the low-label folds (None: no profile task)
    tasks_low_label: dict[str, dict[str, ProbeRow]] | None = None

    def is_empty(self) -> bool:
        return not self.tasks and not self.cross_domain

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "run": self.run, "max_len": self.max_len, "tasks": _rows_json(self.tasks),
            "cross_domain": _rows_json(self.cross_domain)}
        if self.tasks_low_label is not None:
            out["tasks_low_label"] = _rows_json(self.tasks_low_label)
        return out


def _rows_json(tasks: dict[str, dict[str, ProbeRow]] | dict[str, dict[str, RankingProbeRow]]
               ) -> dict[str, Any]:
    return {task: {name: row.to_json() for name, row in rows.items()}
            for task, rows in tasks.items()}


def probe_run(run_dir: str | Path, cfg: ExperimentConfig, dataset: PreparedDataset,
              encoder: NextItNet, plan: EvaluationPlan | None = None) -> ProbeReport:
    """Probe every profile and cross-domain task of the run's config on the plan's splits."""
    plan = plan if plan is not None else plan_evaluation(cfg, dataset)
    max_len = cfg.model.max_len
    tasks: dict[str, dict[str, ProbeRow]] = {}
    low_label: dict[str, dict[str, ProbeRow]] | None = None
    if plan.profile:
        items = profile_inputs(dataset, np.arange(dataset.num_users), max_len).numpy()
        vectors = {readout: frozen_vectors(encoder, items, readout) for readout in PROBE_READOUTS}
        vectors["tfidf-svd"] = tfidf_svd(dataset, encoder.dim, cfg.seed)
        tasks = {name: probe_attribute(vectors, dataset, split.labels,
                                       split.regimes[FULL_REGIME].folds)
                 for name, split in plan.profile.items()}
        low_label = {name: probe_attribute(vectors, dataset, split.labels,
                                           split.regimes[LOW].folds)
                     for name, split in plan.profile.items() if LOW in split.regimes}
    cross_domain = {
        name: probe_cross_domain(encoder, cross_domain_view(dataset, users), max_len, cfg.eval.k)
        for name, users in plan.cross_domain.items()}
    return ProbeReport(str(run_dir), max_len, tasks, cross_domain, low_label)


def probe_run_dir(run_dir: str | Path) -> ProbeReport:
    """Load a finished run (config, prepared data, pretrained encoder) and probe it."""
    from uservec.training.checkpoint import load_encoder
    from uservec.training.data.prepare import load_run_dataset
    from uservec.training.run_dir import read_run_config

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    dataset = load_run_dataset(cfg.data, run_dir)
    encoder, _ = load_encoder(run_dir / "pretrain" / "best.pt")
    return probe_run(run_dir, cfg, dataset, encoder)
