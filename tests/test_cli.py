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
    assert result.exit_code == 1
    assert "unknown key(s) ['width']" in result.output
    assert "Traceback" not in result.output


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
