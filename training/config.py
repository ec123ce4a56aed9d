"""Experiment configuration: frozen dataclasses loaded from a TOML/YAML file plus CLI overrides.

One file describes a whole experiment (data, model, pretraining, tasks, task training, export),
so a run is reproducible from its config alone; the resolved config is written into every
checkpoint and report. Every value is checked when the config loads (types, ``Literal`` choices,
ranges: :mod:`uservec.training.config_schema`); ``docs/configuration.md`` is generated from the
sections below (``uservec config-docs``), field comments included.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from uservec.training.choices import (
    DataFormat,
    TaskKind,
)
from uservec.training.config_schema import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    SHARE,
    ConfigError,
    Section,
    build_dataclass,
    setting,
)
from uservec.training.evaluation.kinds import DEFAULT_LABEL_FRACTIONS
from uservec.training.pretrain_settings import CorpusConfig, PretrainConfig
from uservec.training.task_settings import AdaptSettings

__all__ = [
    "AdaptSettings",
    "ConfigError",
    "CorpusConfig",
    "DataConfig",
    "EvalConfig",
    "ExperimentConfig",
    "ExportConfig",
    "ModelConfig",
    "PretrainConfig",
    "TaskConfig",
    "apply_overrides",
    "build_dataclass",
    "config_to_dict",
    "load_config",
    "read_config_json",
]

#: sections that older configs kept under ``[extra.<name>]``; still read from there
LEGACY_EXTRA = ("adapt", "export")
#: task names become file and graph-output names (tasks/<name>/, profile_<name>)
TASK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class DataConfig(Section):
    """Where the behaviour data comes from and how it is prepared."""

    #: raw data format (README.md#data)
    format: DataFormat = "movielens"
    #: folder (movielens, peterrec, amazon-cdrib) or interactions file (generic); required
    #: unless format = "synthetic"
    path: str | None = None
    #: generic: optional users file ``user_id,<attribute columns>``
    users_path: str | None = None
    #: generic: user id column of the interactions file
    user_col: str = "user_id"
    #: generic: item id column of the interactions file
    item_col: str = "item_id"
    #: generic: timestamp column (numbers or ISO 8601 dates; absent = file order)
    timestamp_col: str = "timestamp"
    #: generic: domain column (absent = one domain)
    domain_col: str | None = None
    #: generic: rating column (kept for reference; every row is an event)
    rating_col: str | None = None
    #: items seen fewer times map to the unknown id
    min_count: int = setting(1, POSITIVE)
    #: synthetic: number of generated users
    synthetic_users: int = setting(600, POSITIVE)
    #: synthetic: number of generated items per domain
    synthetic_items: int = setting(300, POSITIVE)
    #: synthetic: number of generated domains
    synthetic_domains: int = setting(2, POSITIVE)
    #: synthetic: events per basket sharing one timestamp, ordered within it only by item id
    #: (0 = every event its own time); tests the order-free pretraining objective
    synthetic_basket: int = setting(0, NON_NEGATIVE)
    #: generic: prepare the interactions file in chunks of this many rows into memory-mapped
    #: arrays (training.data.chunked: for files larger than memory; same arrays); 0 = in memory
    chunk_rows: int = setting(0, NON_NEGATIVE)
    #: where prepared arrays are cached across runs (default: only the run folder's prepared/)
    cache_dir: str | None = None
    #: users file values (compared after trimming spaces) that mean "no label": a user with one
    #: of them in a task's column is unlabelled for that task, never a class of its own
    missing_labels: tuple[str, ...] = ("",)

    SECTION = "data"


@dataclass(frozen=True)
class ModelConfig(Section):
    """NextItNet encoder sizes.

    Defaults are sized for MovieLens-100K on two shared CPU cores: about 2 CPU-minutes of
    pretraining (4 wall-minutes under load), P1 test NDCG@10 0.059 vs 0.012 for popularity.
    """

    #: hidden size of item embeddings, blocks and user vectors
    dim: int = setting(64, POSITIVE)
    #: one residual block (convolutions dilated d and 2d) per entry; receptive field 91 events
    dilations: tuple[int, ...] = setting((1, 2, 4, 8), POSITIVE, non_empty=True)
    #: width of every causal convolution
    kernel_size: int = setting(3, POSITIVE)
    #: latest events a user vector reads (tasks, export and serving)
    max_len: int = setting(50, POSITIVE)
    #: dropout inside the residual blocks while training
    dropout: float = setting(0.2, FRACTION)

    SECTION = "model"


@dataclass(frozen=True)
class EvalConfig(Section):
    """Next-item evaluation (P1) and the cut-off of every ranking metric."""

    #: cut-off of HR@k, NDCG@k and Recall@k
    k: int = setting(10, POSITIVE)
    #: users per evaluation batch
    batch_size: int = setting(256, POSITIVE)
    #: P2 label-efficiency regimes: the labelled share of each training fold (stratified,
    #: seed 0); 1.0 (every label) is required. A regime too small for a task's classes is
    #: skipped with a note (docs/protocols.md#p2-label-efficiency-regimes)
    label_fractions: tuple[float, ...] = setting(DEFAULT_LABEL_FRACTIONS, SHARE, non_empty=True)

    SECTION = "eval"

    def __post_init__(self) -> None:
        super().__post_init__()
        if 1.0 not in self.label_fractions:
            raise ConfigError(f"config.eval.label_fractions: {list(self.label_fractions)} must "
                              "include 1.0 (every label): the other regimes are read against it")
        if len(set(self.label_fractions)) != len(self.label_fractions):
            raise ConfigError(f"config.eval.label_fractions: {list(self.label_fractions)} "
                              "lists a fraction twice")


@dataclass(frozen=True)
class TaskConfig(Section):
    """A downstream task (``[[tasks]]``, one table per task): a profile attribute (P2) or a
    cross-domain target (P3)."""

    #: task name: letters, digits, "_" and "-" (it names files and graph outputs)
    name: str
    #: "profile" (predict a users-file column) or "cross_domain" (cold-start recommendation
    #: into target_domain)
    kind: TaskKind
    #: profile: users-file column (required)
    attribute: str | None = None
    #: profile: increasing numeric bucket edges (numpy.digitize); absent = the column's values
    buckets: tuple[float, ...] | None = None
    #: cross_domain: target domain (required)
    target_domain: str | None = None
    #: profile: evaluate every regime of eval.label_fractions; false = only with every label (1.0)
    low_label: bool = True

    SECTION = "tasks"

    def __post_init__(self) -> None:
        super().__post_init__()
        where = f"config.tasks[{self.name}]"
        if not TASK_NAME.match(self.name):
            raise ConfigError(f"config.tasks.name: {self.name!r} is not allowed (letters, "
                              "digits, '_' and '-', starting with a letter or digit)")
        if self.kind == "profile" and not self.attribute:
            raise ConfigError(f"{where}.attribute: required for a profile task")
        if self.kind == "cross_domain" and not self.target_domain:
            raise ConfigError(f"{where}.target_domain: required for a cross_domain task")
        edges = list(self.buckets or ())
        if any(high <= low for low, high in itertools.pairwise(edges)):
            raise ConfigError(f"{where}.buckets: {edges} must be strictly increasing")


@dataclass(frozen=True)
class ExportConfig(Section):
    """Whether ``uservec run`` ends with an export, where to, and with an int8 twin."""

    #: export a bundle when the run has finished
    enabled: bool = False
    #: bundle folder (default OUT/bundle)
    out: str | None = None
    #: also write a static int8 model, shipped only if it passes its agreement gate
    int8: bool = False

    SECTION = "export"


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """One experiment: its name, seed and every section."""

    #: experiment name; names runs/<name> and the bundle
    name: str
    #: seed of every random choice (splits excepted: those are fixed by docs/protocols.md)
    seed: int = setting(0, NON_NEGATIVE)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tasks: tuple[TaskConfig, ...] = ()
    adapt: AdaptSettings = field(default_factory=AdaptSettings)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        names = [task.name for task in self.tasks]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ConfigError(f"config.tasks.name: {twice[0]!r} names two tasks; names must "
                              "be unique")
        corpus = self.pretrain.corpus
        if corpus is not None:
            if self.pretrain.objective != "set":
                raise ConfigError("config.pretrain.objective: a [pretrain.corpus] is read as "
                                  f"sets of items; set objective = \"set\" (got "
                                  f"{self.pretrain.objective!r})")
            profile = {t.name for t in self.tasks if t.kind == "profile"}
            unknown = [name for name in corpus.label_tasks if name not in profile]
            if unknown:
                raise ConfigError(f"config.pretrain.corpus.label_tasks: {unknown[0]!r} is not a "
                                  f"profile task of this config (have {sorted(profile)})")


def parse_override(text: str) -> tuple[list[str], Any]:
    """``pretrain.epochs=3`` -> (["pretrain", "epochs"], 3); the value is parsed as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    return key.strip().split("."), yaml.safe_load(raw)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of the raw config dict with dotted ``key=value`` overrides applied."""
    result: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in raw.items()}
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            node[part] = dict(child) if isinstance(child, dict) else {}
            node = node[part]
        node[path[-1]] = value
    return result


def read_raw_config(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML file into a dict."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: top level must be a mapping")
            return data
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot parse: {exc}") from exc
    raise ConfigError(f"{path}: unsupported config extension {path.suffix!r} (use .toml or .yaml)")


def experiment_config(raw: dict[str, Any], where: str = "config") -> ExperimentConfig:
    """Build and check an :class:`ExperimentConfig` from a parsed file (legacy layout included).

    Older configs and run folders keep ``[adapt]`` and ``[export]`` under ``[extra]``; they are
    read from there, and any other ``extra`` key is refused like every unknown key.
    """
    raw = dict(raw)
    extra = raw.pop("extra", None) or {}
    if not isinstance(extra, dict):
        raise ConfigError(f"{where}.extra: expected a table, got {extra!r}")
    for key, value in extra.items():
        if key not in LEGACY_EXTRA:
            raise ConfigError(f"{where}.extra: unknown key {key!r} (allowed: "
                              f"{', '.join(LEGACY_EXTRA)}, better written as [{key}])")
        if key in raw:
            raise ConfigError(f"{where}: both [{key}] and [extra.{key}] are given; keep [{key}]")
        raw[key] = value
    return build_dataclass(ExperimentConfig, raw, where)


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment config file, apply CLI overrides and check every value."""
    raw = apply_overrides(read_raw_config(path), overrides or [])
    raw.setdefault("name", Path(path).stem)
    cfg = experiment_config(raw)
    if cfg.data.format != "synthetic" and not cfg.data.path:
        raise ConfigError(f"config.data.path: required for format {cfg.data.format!r}")
    return cfg


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON view of a config (for checkpoints, reports and manifests)."""
    return dataclasses.asdict(config)


def read_config_json(path: Path) -> ExperimentConfig:
    """A resolved config as a run folder records it (JSON written from :func:`config_to_dict`)."""
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is {path.parent} a finished `uservec run` folder?")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); the run folder is damaged, re-run it "
                          "or restore config.json") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return experiment_config(raw, path.name)
