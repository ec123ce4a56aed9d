"""Experiment configuration: frozen dataclasses loaded from a TOML/YAML file plus CLI overrides.

One file describes a whole experiment (data, model, pretraining, tasks, export), so a run is
reproducible from its config alone; the resolved config is written into every checkpoint and report.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """The experiment config is malformed; the message names the key."""


#: (test, what it asks) for a numeric setting; a tuple setting applies it to every element
Rule = tuple[Callable[[float], bool], str]
POSITIVE: Rule = (lambda v: v > 0, "> 0")
NON_NEGATIVE: Rule = (lambda v: v >= 0, ">= 0")
FRACTION: Rule = (lambda v: 0 <= v < 1, "in [0, 1)")


class _Ranged:
    """A config section whose numbers are checked when it is built, from a file or in code.

    Checking here rather than where a config file is parsed means a section built in code
    (tests, ``dataclasses.replace``, a notebook) cannot carry a negative width into torch either.
    """

    #: the section's key in the config file, for messages: ``config.<SECTION>.<key>``
    SECTION: ClassVar[str] = ""
    RANGES: ClassVar[dict[str, Rule]] = {}

    def __post_init__(self) -> None:
        values = {key: getattr(self, key) for key in self.RANGES}
        _check_ranges(self.RANGES, values, f"config.{self.SECTION}")


@dataclass(frozen=True)
class DataConfig(_Ranged):
    """Where the behaviour data comes from and how it is prepared."""

    #: movielens | generic | peterrec | amazon-cdrib | synthetic
    format: str = "movielens"
    #: folder (movielens, peterrec, amazon-cdrib) or interactions file (generic)
    path: str | None = None
    #: generic: optional users file ``user_id,<attribute columns>``
    users_path: str | None = None
    #: generic: column names in the interactions file
    user_col: str = "user_id"
    item_col: str = "item_id"
    timestamp_col: str = "timestamp"
    domain_col: str | None = None
    rating_col: str | None = None
    #: items seen fewer times map to the unknown id
    min_count: int = 1
    #: synthetic: size of the generated dataset
    synthetic_users: int = 600
    synthetic_items: int = 300
    synthetic_domains: int = 2
    #: where prepared arrays are cached (default: OUT/prepared)
    cache_dir: str | None = None

    SECTION = "data"
    RANGES: ClassVar[dict[str, Rule]] = {
        "min_count": POSITIVE, "synthetic_users": POSITIVE, "synthetic_items": POSITIVE,
        "synthetic_domains": POSITIVE,
    }


@dataclass(frozen=True)
class ModelConfig(_Ranged):
    """NextItNet encoder sizes.

    Defaults are sized for MovieLens-100K on two shared CPU cores: about 2 CPU-minutes of
    pretraining (4 wall-minutes under load), P1 test NDCG@10 0.059 vs 0.012 for popularity.
    """

    dim: int = 64
    #: one residual block (convolutions dilated d and 2d) per entry; receptive field 91 events
    dilations: tuple[int, ...] = (1, 2, 4, 8)
    kernel_size: int = 3
    max_len: int = 50
    dropout: float = 0.2

    SECTION = "model"
    RANGES: ClassVar[dict[str, Rule]] = {
        "dim": POSITIVE, "dilations": POSITIVE, "kernel_size": POSITIVE, "max_len": POSITIVE,
        "dropout": FRACTION,
    }


@dataclass(frozen=True)
class PretrainConfig(_Ranged):
    """Self-supervised next-item pretraining."""

    epochs: int = 20
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    #: full | sampled softmax
    loss: Literal["full", "sampled"] = "full"
    num_negatives: int = 256
    #: epochs without validation improvement before stopping
    patience: int = 3
    #: stop early when the wall clock passes this many seconds (0 = no limit)
    max_seconds: float = 0.0
    #: torch intra-op threads while pretraining and fitting tasks (0 = torch's default, one per
    #: core). 1 by default:
    #: on cores shared with other jobs, multi-threaded ops spin-wait and ran 3-5x slower (ML-100K)
    num_threads: int = 1
    #: weight of the user-level bag objective (training.objectives.bag_loss) added to the
    #: next-item loss; 0 = plain NextItNet. Meant to make the mean readout a long-term taste
    #: summary; at 1.0 it did not help on ML-100K (README), item_init = "svd" did.
    bag_weight: float = 0.0
    #: item embeddings at the start: "random" (normal) or "svd" (the item factors of a truncated
    #: SVD of the users' TF-IDF item bags over training events: training.pretrain.svd_item_init)
    item_init: Literal["random", "svd"] = "random"
    #: length of the windows histories are cut into for next-item training (0 = model.max_len).
    #: The encoder has no positional embeddings, so it reads longer inputs (model.max_len, what
    #: tasks, export and serving use) as well as the windows it trained on: short windows train
    #: faster, and a mean readout over a long window summarises more of a user's taste.
    window: int = 0

    SECTION = "pretrain"
    RANGES: ClassVar[dict[str, Rule]] = {
        "epochs": POSITIVE, "batch_size": POSITIVE, "lr": POSITIVE, "weight_decay": NON_NEGATIVE,
        "grad_clip": NON_NEGATIVE, "num_negatives": POSITIVE, "patience": POSITIVE,
        "max_seconds": NON_NEGATIVE, "num_threads": NON_NEGATIVE, "bag_weight": NON_NEGATIVE,
        "window": NON_NEGATIVE,
    }


@dataclass(frozen=True)
class EvalConfig(_Ranged):
    k: int = 10
    batch_size: int = 256

    SECTION = "eval"
    RANGES: ClassVar[dict[str, Rule]] = {"k": POSITIVE, "batch_size": POSITIVE}


@dataclass(frozen=True)
class TaskConfig:
    """A downstream task (issue 3): a profile attribute or a cross-domain target."""

    name: str
    #: profile | cross_domain
    kind: str
    #: profile: users-file column; optional numeric bucket edges (numpy.digitize)
    attribute: str | None = None
    buckets: tuple[float, ...] | None = None
    #: cross_domain: target domain
    target_domain: str | None = None
    #: profile: also run the 10%-labels variant
    low_label: bool = True


@dataclass(frozen=True)
class ExperimentConfig:
    name: str
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tasks: tuple[TaskConfig, ...] = ()
    #: free-form sections later stages read (adapt, export, serve)
    extra: dict[str, Any] = field(default_factory=dict)


T = TypeVar("T")


def _coerce(tp: Any, value: Any, where: str) -> Any:
    """Convert a parsed TOML/YAML value to the annotated type (tuples, nested dataclasses)."""
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {type(value).__name__}")
        return build_dataclass(tp, value, where)  # type: ignore[arg-type]
    if origin is tuple:
        args = get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is not None and type(None) in get_args(tp):  # Optional[X]
        if value is None:
            return None
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _coerce(inner[0], value, where) if len(inner) == 1 else value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def build_dataclass(cls: type[T], values: dict[str, Any], where: str = "config") -> T:
    """Build a frozen dataclass from a dict, rejecting unknown keys with their full path."""
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {k: _coerce(hints[k], v, f"{where}.{k}") for k, v in values.items()}
    try:  # out-of-range numbers: ConfigError from the section's __post_init__ (_Ranged)
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def _check_ranges(rules: dict[str, Rule], values: dict[str, Any], where: str) -> None:
    """Reject out-of-range numbers here, with their key, rather than deep inside torch."""
    for key, (ok, wanted) in rules.items():
        value = values.get(key)
        for item in value if isinstance(value, tuple) else (value,):
            if isinstance(item, int | float) and not ok(item):
                raise ConfigError(f"{where}.{key} must be {wanted}, got {value!r}")


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


def load_config(path: str | Path, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment config file and apply CLI overrides."""
    raw = apply_overrides(read_raw_config(path), overrides or [])
    raw.setdefault("name", Path(path).stem)
    return build_dataclass(ExperimentConfig, raw)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain-JSON view of a config (for checkpoints, reports and manifests)."""
    return dataclasses.asdict(config)


def read_run_config(run_dir: str | Path) -> ExperimentConfig:
    """The resolved config a finished ``uservec run`` was made with (``RUN_DIR/config.json``)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ConfigError(f"{path}: not found; is {run_dir} a finished `uservec run` folder?")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc}); the run folder is damaged, re-run it "
                          "or restore config.json") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    return build_dataclass(ExperimentConfig, raw, "config.json")
