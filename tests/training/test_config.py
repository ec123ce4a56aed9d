import dataclasses
from pathlib import Path

import pytest

from uservec.pipeline import export_settings
from uservec.training.adapt import adapt_settings
from uservec.training.config import (
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    PretrainConfig,
    apply_overrides,
    load_config,
    read_run_config,
)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_and_yaml_give_the_same_config(tmp_path):
    toml = write(tmp_path, "a.toml", 'name = "x"\n[model]\ndim = 32\ndilations = [1, 2]\n')
    yaml = write(tmp_path, "a.yaml", "name: x\nmodel:\n  dim: 32\n  dilations: [1, 2]\n")
    assert load_config(toml) == load_config(yaml)
    assert load_config(toml).model.dilations == (1, 2)


def test_name_defaults_to_file_stem(tmp_path):
    assert load_config(write(tmp_path, "ml.toml", "")).name == "ml"


def test_overrides_are_typed_and_nested(tmp_path):
    path = write(tmp_path, "a.toml", "[pretrain]\nepochs = 9\n")
    cfg = load_config(path, ["pretrain.epochs=2", "pretrain.lr=0.01", "data.format=generic"])
    assert cfg.pretrain.epochs == 2 and cfg.pretrain.lr == 0.01 and cfg.data.format == "generic"


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "a.toml", "[model]\ndimm = 3\n")
    with pytest.raises(ConfigError, match=r"config\.model: unknown key\(s\) \['dimm'\]"):
        load_config(path)


def test_wrong_type_is_named(tmp_path):
    path = write(tmp_path, "a.toml", '[pretrain]\nepochs = "many"\n')
    with pytest.raises(ConfigError, match=r"config\.pretrain\.epochs"):
        load_config(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.dim=-3", r"config\.model\.dim must be > 0, got -3"),
        ("model.dilations=[1, 0]", r"config\.model\.dilations must be > 0, got \(1, 0\)"),
        ("model.dropout=1.0", r"config\.model\.dropout must be in \[0, 1\)"),
        ("pretrain.lr=0", r"config\.pretrain\.lr must be > 0"),
        ("pretrain.window=-1", r"config\.pretrain\.window must be >= 0"),
        ("data.min_count=0", r"config\.data\.min_count must be > 0"),
        ("eval.k=0", r"config\.eval\.k must be > 0"),
    ],
)
def test_out_of_range_numbers_are_named(tmp_path, override, message):
    """A negative width used to surface as torch's 'negative dimension' traceback mid-run."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "a.toml", ""), [override])


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"config\.model\.dim must be > 0, got 0"):
        ModelConfig(dim=0)
    with pytest.raises(ConfigError, match=r"config\.pretrain\.epochs must be > 0"):
        dataclasses.replace(PretrainConfig(), epochs=0)


def test_boundary_values_are_accepted(tmp_path):
    cfg = load_config(write(tmp_path, "a.toml", ""),
                      ["model.dropout=0", "pretrain.window=0", "pretrain.weight_decay=0"])
    assert cfg.model.dropout == 0.0 and cfg.pretrain.window == 0


@pytest.mark.parametrize("text", ['{"name": 3', "[1, 2]"])
def test_a_damaged_run_config_is_named(tmp_path, text):
    """`uservec probe/export` on a run whose config.json was truncated: one line, no traceback."""
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=r"config\.json: (not valid JSON|expected a JSON object)"):
        read_run_config(tmp_path)


def test_tasks_are_parsed(tmp_path):
    text = '[[tasks]]\nname = "age"\nkind = "profile"\nattribute = "age"\nbuckets = [18, 25]\n'
    cfg = load_config(write(tmp_path, "a.toml", text))
    assert cfg.tasks[0].buckets == (18.0, 25.0)


def test_bad_override_syntax(tmp_path):
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        apply_overrides({}, ["nonsense"])


def test_missing_file_and_bad_extension(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="unsupported"):
        load_config(write(tmp_path, "a.json", "{}"))


def test_defaults_are_complete():
    cfg = ExperimentConfig(name="x")
    assert cfg.seed == 0 and cfg.model.kernel_size == 3


SHIPPED = sorted((Path(__file__).resolve().parents[2] / "configs").glob("*.toml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_loads_with_its_task_settings(path):
    """A typo in a shipped config (an unknown key, a bad choice) fails here, not an hour in."""
    cfg = load_config(path)
    settings = adapt_settings(cfg)
    assert settings.methods
    export_settings(cfg)  # [extra.export] keys checked too
    assert all(task.kind in ("profile", "cross_domain") for task in cfg.tasks)


def test_the_shipped_configs_are_all_found():
    assert {p.name for p in SHIPPED} >= {"movielens-100k.toml", "ciao.toml",
                                         "amazon-game-video.toml", "demo.toml", "tiny.toml"}
