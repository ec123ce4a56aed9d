"""The command line: every command documents itself and fails cleanly on bad input."""

from __future__ import annotations

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
