import dataclasses
from pathlib import Path

import pytest

from uservec.training.config import (
    AdaptSettings,
    ConfigError,
    ExperimentConfig,
    ModelConfig,
    PretrainConfig,
    TaskConfig,
    apply_overrides,
    load_config,
)
from uservec.training.run_dir import read_run_config

SYNTHETIC = '[data]\nformat = "synthetic"\n'


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_toml_and_yaml_give_the_same_config(tmp_path):
    toml = write(tmp_path, "a.toml",
                 'name = "x"\n' + SYNTHETIC + '[model]\ndim = 32\ndilations = [1, 2]\n')
    yaml = write(tmp_path, "a.yaml", "name: x\ndata:\n  format: synthetic\n"
                 "model:\n  dim: 32\n  dilations: [1, 2]\n")
    assert load_config(toml) == load_config(yaml)
    assert load_config(toml).model.dilations == (1, 2)


def test_name_defaults_to_file_stem(tmp_path):
    assert load_config(write(tmp_path, "ml.toml", SYNTHETIC)).name == "ml"


def test_overrides_are_typed_and_nested(tmp_path):
    path = write(tmp_path, "a.toml", "[pretrain]\nepochs = 9\n")
    cfg = load_config(path, ["pretrain.epochs=2", "pretrain.lr=0.01", "data.format=generic",
                             "data.path=events.csv"])
    assert cfg.pretrain.epochs == 2 and cfg.pretrain.lr == 0.01 and cfg.data.format == "generic"


def test_unknown_key_is_named(tmp_path):
    path = write(tmp_path, "a.toml", "[model]\ndimm = 3\n")
    with pytest.raises(ConfigError, match=r"config\.model: unknown key 'dimm' \(allowed: dim, "):
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
        load_config(write(tmp_path, "a.toml", SYNTHETIC), [override])


def test_sections_built_in_code_are_checked_too():
    with pytest.raises(ConfigError, match=r"config\.model\.dim must be > 0, got 0"):
        ModelConfig(dim=0)
    with pytest.raises(ConfigError, match=r"config\.pretrain\.epochs must be > 0"):
        dataclasses.replace(PretrainConfig(), epochs=0)


def test_boundary_values_are_accepted(tmp_path):
    cfg = load_config(write(tmp_path, "a.toml", SYNTHETIC),
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
    cfg = load_config(write(tmp_path, "a.toml", SYNTHETIC + text))
    assert cfg.tasks[0].buckets == (18.0, 25.0)


def test_bad_override_syntax():
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
    assert cfg.adapt.methods
    assert all(task.kind in ("profile", "cross_domain") for task in cfg.tasks)


def test_the_shipped_configs_are_all_found():
    assert {p.name for p in SHIPPED} >= {"movielens-100k.toml", "ciao.toml",
                                         "amazon-game-video.toml", "demo.toml", "tiny.toml"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("pretrain.loss=bogus",
         r"^config\.pretrain\.loss: 'bogus' is not allowed \(allowed: 'full', 'sampled'\)$"),
        ("data.format=lastfm", r"^config\.data\.format: 'lastfm' is not allowed \(allowed: "),
        ("adapt.methods=[adapter, lora]", r"^config\.adapt\.methods\[1\]: 'lora' is not allowed"),
        ("adapt.final_method=scratch", r"^config\.adapt\.final_method: 'scratch' is not allowed"),
        ("adapt.valid_fraction=1.0", r"^config\.adapt\.valid_fraction must be in \(0, 1\)"),
        ("adapt.bottleneck_grid=[]", r"^config\.adapt\.bottleneck_grid must not be empty"),
        ("model.dim=true", r"^config\.model\.dim: expected integer, got True$"),
        ("model.dilations=3", r"^config\.model\.dilations: expected a list, got 3$"),
        ("export.int8=yes please", r"^config\.export\.int8: expected boolean, got 'yes please'$"),
        ("export.gzip=true",
         r"^config\.export: unknown key 'gzip' \(allowed: enabled, out, int8\)$"),
        ("seed=-1", r"^config\.seed must be >= 0, got -1$"),
    ],
)
def test_a_bad_value_is_one_line_naming_key_value_and_what_is_allowed(tmp_path, override, message):
    """Issue 22.11: `pretrain.loss = "bogus"` used to fail 8 s in, after preparation and SVD."""
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "a.toml", SYNTHETIC), [override])


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ('name = "g"\nkind = "profile"', r"config\.tasks\[g\]\.attribute: required"),
        ('name = "t"\nkind = "cross_domain"', r"config\.tasks\[t\]\.target_domain: required"),
        ('name = "a"\nkind = "profile"\nattribute = "age"\nbuckets = [25, 18]',
         r"config\.tasks\[a\]\.buckets: \[25\.0, 18\.0\] must be strictly increasing"),
        ('name = "a.b"\nkind = "profile"\nattribute = "x"', r"config\.tasks\.name: 'a\.b'"),
        ('name = "g"\nkind = "ranking"', r"config\.tasks\[0\]\.kind: 'ranking' is not allowed"),
        ('kind = "profile"', r"config\.tasks\[0\]\.name: required"),
    ],
)
def test_tasks_are_checked_when_the_config_loads(tmp_path, task, message):
    with pytest.raises(ConfigError, match=message):
        load_config(write(tmp_path, "a.toml", SYNTHETIC + "[[tasks]]\n" + task + "\n"))


def test_task_names_are_unique():
    task = TaskConfig("g", "profile", attribute="gender")
    with pytest.raises(ConfigError, match="'g' names two tasks"):
        ExperimentConfig(name="x", tasks=(task, task))


def test_a_real_data_format_needs_a_path(tmp_path):
    with pytest.raises(ConfigError, match=r"config\.data\.path: required for format 'movielens'"):
        load_config(write(tmp_path, "a.toml", ""))


def test_the_legacy_extra_sections_are_still_read(tmp_path):
    """Configs and run folders written before [adapt] / [export] keep loading."""
    text = SYNTHETIC + "[extra.adapt]\nmax_epochs = 3\n[extra.export]\nenabled = true\n"
    cfg = load_config(write(tmp_path, "a.toml", text))
    assert cfg.adapt == AdaptSettings(max_epochs=3) and cfg.export.enabled
    with pytest.raises(ConfigError, match=r"both \[adapt\] and \[extra\.adapt\]"):
        load_config(write(tmp_path, "b.toml", text + "[adapt]\npatience = 1\n"))
    with pytest.raises(ConfigError, match=r"config\.extra: unknown key 'serve'"):
        load_config(write(tmp_path, "c.toml", SYNTHETIC + "[extra.serve]\nport = 1\n"))


def test_a_run_config_round_trips(tmp_path):
    import json

    from uservec.training.config import config_to_dict

    cfg = load_config(write(tmp_path, "a.toml", SYNTHETIC + "[adapt]\nmethods = [\"adapter\"]\n"
                            '[[tasks]]\nname = "g"\nkind = "profile"\nattribute = "gender"\n'))
    (tmp_path / "config.json").write_text(json.dumps(config_to_dict(cfg)))
    assert read_run_config(tmp_path) == cfg


def test_missing_label_tokens_default_to_blank_only(tmp_path):
    assert load_config(write(tmp_path, "a.toml", SYNTHETIC)).data.missing_labels == ("",)
    cfg = load_config(write(tmp_path, "b.toml", SYNTHETIC + 'missing_labels = ["", "Unknown"]\n'))
    assert cfg.data.missing_labels == ("", "Unknown")
