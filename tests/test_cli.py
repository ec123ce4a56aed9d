"""The command line: every command documents itself and fails cleanly on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from uservec.cli import main


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield (*prefix, name)
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", list(_commands(main)))
def test_every_command_has_help_with_an_example_or_summary(path):
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    command = main
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    # a command without a docstring still prints Usage and Options: check the text itself
    assert command.help
    summary = " ".join(command.help.strip().splitlines()[0].split())
    assert summary in " ".join(result.output.split())  # click re-wraps the text
    if not hasattr(command, "commands"):  # every leaf command shows how to call it
        assert "Example:" in command.help


def test_bad_config_is_a_one_line_error_not_a_traceback(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text("[model]\nwidth = 3\n")
    result = CliRunner().invoke(main, ["run", str(config), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "config.model: unknown key 'width' (allowed: dim," in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("command", ["run", "prepare", "demo"])
def test_a_bad_config_value_stops_before_any_data_is_read(tmp_path, command):
    """Issue 22.11: `pretrain.loss = "bogus"` failed 8 s in, after preparation, with a traceback.

    The data path does not exist: reading it would fail with another message (exit 1).
    """
    config = tmp_path / "bad.toml"
    config.write_text(f'[data]\nformat = "movielens"\npath = "{tmp_path / "nowhere"}"\n'
                      '[pretrain]\nloss = "bogus"\n')
    out = tmp_path / "out"
    args = ["--config", str(config)] if command == "demo" else [str(config)]
    result = CliRunner().invoke(main, [command, *args, "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == ["Error: config.pretrain.loss: 'bogus' is not allowed (allowed: 'full', "
                     "'sampled')"]
    assert not out.exists()


def test_missing_data_names_the_path(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[data]\nformat = "movielens"\npath = "{tmp_path / "nowhere"}"\n')
    result = CliRunner().invoke(main, ["prepare", str(config), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert "nowhere" in result.output


def test_bundle_verify_refuses_a_folder_that_is_not_a_bundle(tmp_path):
    result = CliRunner().invoke(main, ["bundle", "verify", str(tmp_path)])
    assert result.exit_code == 1
    assert "manifest not found" in result.output


def test_serve_refuses_a_folder_that_is_not_a_bundle_before_starting(tmp_path):
    result = CliRunner().invoke(main, ["serve", "--bundle", str(tmp_path)])
    assert result.exit_code == 1
    assert "cannot serve" in result.output and "manifest not found" in result.output
    assert "Traceback" not in result.output


def test_serve_names_a_bad_environment_setting(monkeypatch):
    monkeypatch.setenv("USERVEC_PORT", "eighty")
    result = CliRunner().invoke(main, ["serve"])
    assert result.exit_code == 1
    assert "USERVEC_PORT='eighty'" in result.output and "valid integer" in result.output


def test_bundle_info_verifies_a_good_bundle_and_names_a_bad_ones_problem(bundle_dir, bundle_copy):
    """Regression: `uservec bundle info` printed `verified: False` for a good bundle."""
    good = CliRunner().invoke(main, ["bundle", "info", str(bundle_dir)])
    assert good.exit_code == 0, good.output
    assert "verified: True" in good.output and "problem: None" in good.output
    unchecked = CliRunner().invoke(main, ["bundle", "info", "--no-verify", str(bundle_dir)])
    assert "verified: None" in unchecked.output
    (bundle_copy / "vocab.json").write_text("{}")
    bad = CliRunner().invoke(main, ["bundle", "info", str(bundle_copy)])
    assert bad.exit_code == 1
    assert "verified: False" in bad.output and "sha256 mismatch" in bad.output


def _age_data(tmp_path, num_users: int = 300, ages=None):
    """A generic CSV and users file: ``num_users`` users, 8 events each, an ``age`` column."""
    rng = np.random.default_rng(0)
    rows = ["user_id,item_id,timestamp"]
    rows += [f"{u},{int(rng.integers(0, 40))},{t}" for u in range(1, num_users + 1)
             for t in range(8)]
    (tmp_path / "events.csv").write_text("\n".join(rows) + "\n")
    ages = rng.integers(15, 70, num_users) if ages is None else ages
    users = ["user_id,age", *(f"{u},{a}" for u, a in zip(range(1, num_users + 1), ages,
                                                           strict=True))]
    (tmp_path / "users.csv").write_text("\n".join(users) + "\n")


def _age_config(tmp_path, buckets: str = "[25, 35, 45, 55]") -> str:
    config = tmp_path / "age.toml"
    config.write_text(f"""
name = "age"
[data]
format = "generic"
path = "{tmp_path / 'events.csv'}"
users_path = "{tmp_path / 'users.csv'}"
[model]
dim = 16
dilations = [1]
max_len = 8
[pretrain]
epochs = 1
[eval]
label_fractions = [0.01, 0.1, 1.0]
[[tasks]]
name = "age"
kind = "profile"
attribute = "age"
buckets = {buckets}
[adapt]
methods = ["head-only"]
final_method = "head-only"
max_epochs = 1
patience = 1
""")
    return str(config)


def test_the_issue_22_age_run_skips_a_regime_too_small_instead_of_crashing(tmp_path):
    """Before: ValueError 'test_size = 4 should be greater or equal to the number of classes =
    5' in the low-label holdout, after pretraining, exit 1 with a traceback. Now 10% validates
    on an unstratified holdout and 1% (2 rows for 5 classes) is skipped with a note."""
    _age_data(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", _age_config(tmp_path), "--out", str(out)])
    assert result.exit_code == 0, result.output
    task = json.loads((out / "report.json").read_text())["tasks"]["tasks"]["age"]
    assert list(task["regimes"]) == ["0.1", "1.0"]
    assert "fewer than the 5 classes" in task["skipped_regimes"]["0.01"]
    assert "(P2 profile: age, 1% of the labels)\n\nNot evaluated: skipped: fold 0" in (
        out / "report.md").read_text()


def test_a_task_that_cannot_be_evaluated_stops_before_pretraining_with_exit_2(tmp_path):
    _age_data(tmp_path, ages=[30] * 300)  # one bucket: nothing to predict
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", _age_config(tmp_path), "--out", str(out)])
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)  # click's clean exit, not a traceback
    assert result.output.startswith("Error: cannot evaluate task 'age' (attribute 'age'): 300 "
                                    "labelled users (25-34 300) fall in fewer than two classes")
    assert "Fix:" in result.output
    assert not (out / "pretrain").exists()
