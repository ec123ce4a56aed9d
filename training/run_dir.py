"""The layout of a ``uservec run`` folder, owned in one place.

A run folder is self-contained: every later stage (tasks, export, int8 task metrics, probes,
benchmarks) reads what the earlier stages wrote into it and nothing else, so it can be moved
to another machine, or outlive the raw data it was made from::

    RUN/
      config.json              the resolved experiment config
      prepared/dataset/        the prepared dataset with its vocabulary (PreparedDataset.save)
      prepared/splits.json     the protocol splits (evaluation plan), computed once at preparation
      pretrain/best.pt         the encoder (training.checkpoint), pretrain/last.pt to resume
      tasks/<name>/final.pt    one exported model per task (training.task_artifact)
      report.json, report.md   the report; plots/ its figures; probe.json from `uservec probe`
      bundle/                  the default bundle folder of `uservec run` with export enabled

Nothing else builds these paths by hand.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from uservec.training.config import ExperimentConfig, config_to_dict, read_config_json
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.plan import EvaluationPlan, plan_evaluation

logger = logging.getLogger(__name__)

#: the name of the file whose presence marks a complete PreparedDataset.save
_DATASET_MARKER = "meta.json"
#: file names inside ``pretrain/``: the best encoder, and the latest state a run resumes from
ENCODER_FILE, RESUME_FILE = "best.pt", "last.pt"


class RunDirError(ValueError):
    """A run folder lacks what a stage needs (it is unfinished, or from another layout)."""


class RunDir:
    """Paths and readers of one run folder (module docstring)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"

    # paths ------------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    @property
    def prepared_root(self) -> Path:
        return self.root / "prepared"

    @property
    def dataset_dir(self) -> Path:
        return self.prepared_root / "dataset"

    @property
    def splits_path(self) -> Path:
        return self.prepared_root / "splits.json"

    @property
    def pretrain_dir(self) -> Path:
        return self.root / "pretrain"

    @property
    def encoder_path(self) -> Path:
        """The best pretrained encoder (what tasks start from and export ships)."""
        return self.pretrain_dir / ENCODER_FILE

    @property
    def tasks_dir(self) -> Path:
        return self.root / "tasks"

    def task_dir(self, name: str) -> Path:
        return self.tasks_dir / name

    def task_artifact_path(self, name: str) -> Path:
        return self.task_dir(name) / "final.pt"

    def task_artifact_paths(self) -> list[Path]:
        """Every saved task model, in task-name order."""
        return sorted(self.tasks_dir.glob("*/final.pt"))

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def report_md(self) -> Path:
        return self.root / "report.md"

    @property
    def plots_dir(self) -> Path:
        return self.root / "plots"

    @property
    def probe_path(self) -> Path:
        return self.root / "probe.json"

    @property
    def default_bundle_dir(self) -> Path:
        return self.root / "bundle"

    # config -----------------------------------------------------------------------------------

    def write_config(self, cfg: ExperimentConfig) -> None:
        """Record the resolved config: what every later stage rebuilds the run from."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(json.dumps(config_to_dict(cfg), indent=2))

    def read_config(self) -> ExperimentConfig:
        return read_config_json(self.config_path)

    def config_payload(self) -> dict[str, Any]:
        """The config as written (plain JSON), for the bundle's record of its source."""
        payload = json.loads(self.config_path.read_text())
        if not isinstance(payload, dict):
            raise RunDirError(f"{self.config_path}: expected a JSON object")
        return payload

    # prepared data ----------------------------------------------------------------------------

    def has_dataset(self) -> bool:
        return (self.dataset_dir / _DATASET_MARKER).is_file()

    def save_dataset(self, dataset: PreparedDataset, source: Path | None = None) -> None:
        """Keep the prepared dataset in the run folder (written aside, then renamed in).

        ``source``: an identical saved copy (a shared ``data.cache_dir``) to hard-link from
        instead of writing the arrays again.
        """
        temporary = self.dataset_dir.with_name(f".{self.dataset_dir.name}.tmp-{os.getpid()}")
        shutil.rmtree(temporary, ignore_errors=True)
        if source is not None:
            _link_tree(source, temporary)
        else:
            dataset.save(temporary)
        shutil.rmtree(self.dataset_dir, ignore_errors=True)
        temporary.rename(self.dataset_dir)
        logger.info("prepared data of the run kept in %s", self.dataset_dir)

    def load_dataset(self, mmap: bool = False) -> PreparedDataset:
        """The run's prepared dataset, read from the run folder alone (no raw files);
        ``mmap``: memory-mapped (data larger than memory)."""
        directory = self.dataset_dir if self.has_dataset() else self._legacy_dataset_dir()
        return PreparedDataset.load(directory, mmap=mmap)

    def _legacy_dataset_dir(self) -> Path:
        """Runs made before ``prepared/dataset`` cached one ``prepared/<name>-<fingerprint>``."""
        found = sorted(p.parent for p in self.prepared_root.glob(f"*/{_DATASET_MARKER}"))
        if len(found) != 1:
            raise RunDirError(
                f"{self.root}: no prepared dataset in {self.dataset_dir} (found {len(found)} "
                "older preparations); run `uservec run` on its config again"
            )
        return found[0]

    # protocol splits --------------------------------------------------------------------------

    def save_splits(self, payload: dict[str, Any]) -> None:
        """Write the protocol splits (a JSON payload; numpy arrays become lists)."""
        self.prepared_root.mkdir(parents=True, exist_ok=True)
        temporary = self.splits_path.with_name(f".{self.splits_path.name}.tmp-{os.getpid()}")
        temporary.write_text(json.dumps(payload, default=_plain))
        temporary.replace(self.splits_path)

    def load_splits(self) -> dict[str, Any] | None:
        """The saved protocol splits, or None for a run made before they were saved."""
        if not self.splits_path.is_file():
            return None
        payload = json.loads(self.splits_path.read_text())
        if not isinstance(payload, dict):
            raise RunDirError(f"{self.splits_path}: expected a JSON object")
        return payload

    def save_plan(self, plan: EvaluationPlan, cfg: ExperimentConfig,
                  dataset: PreparedDataset) -> None:
        """Keep the protocol splits with what they were made from (data and task settings)."""
        self.save_splits({"made_from": _plan_inputs(cfg, dataset), "plan": plan.to_payload()})

    def load_plan(self, cfg: ExperimentConfig, dataset: PreparedDataset) -> EvaluationPlan | None:
        """The saved splits, if they were made from this data and these task settings."""
        payload = self.load_splits()
        if payload is None or payload.get("made_from") != _plan_inputs(cfg, dataset):
            return None
        return EvaluationPlan.from_payload(payload["plan"])

    def plan(self, cfg: ExperimentConfig, dataset: PreparedDataset) -> EvaluationPlan:
        """The splits every later stage evaluates on: the saved ones (computed once, when the
        data was prepared); made again only for a run folder from before they were saved."""
        saved = self.load_plan(cfg, dataset)
        if saved is not None:
            return saved
        logger.warning("%s keeps no splits for this data and config; making them again",
                       self.root)
        return plan_evaluation(cfg, dataset)

    # checks -----------------------------------------------------------------------------------

    def require_encoder(self) -> Path:
        if not self.encoder_path.is_file():
            raise RunDirError(f"{self.encoder_path}: no pretrained encoder in this run")
        return self.encoder_path


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a finished ``uservec run`` was made with."""
    return RunDir(run_dir).read_config()


def _plan_inputs(cfg: ExperimentConfig, dataset: PreparedDataset) -> Any:
    """What the splits depend on, as plain JSON: the data, the tasks and the holdout share."""
    made_from = {"dataset_fingerprint": dataset.fingerprint,
                 "tasks": [config_to_dict(task) for task in cfg.tasks],
                 "valid_fraction": cfg.adapt.valid_fraction}
    return json.loads(json.dumps(made_from))


def _plain(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _link_tree(source: Path, target: Path) -> None:
    """Copy ``source`` to ``target`` by hard links where the file system allows (same data)."""

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
        except OSError:
            return shutil.copy2(src, dst)
        return dst

    shutil.copytree(source, target, copy_function=link_or_copy)
