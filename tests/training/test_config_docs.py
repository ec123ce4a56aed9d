"""docs/configuration.md is generated from the config classes and must match them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from click.testing import CliRunner

from uservec.cli import main
from uservec.training.config_docs import SECTIONS, field_comments, render_config_docs

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_configuration_page_is_current():
    """Fails when a key, default or comment changed without `uservec config-docs` being rerun."""
    assert DOC.read_text(encoding="utf-8") == render_config_docs(), (
        "docs/configuration.md is stale: run `uservec config-docs --out docs/configuration.md`")


def test_every_key_is_documented_with_a_comment_and_its_real_default():
    page = render_config_docs()
    for _, cls in SECTIONS:
        comments = field_comments(cls)
        for field in dataclasses.fields(cls):
            if dataclasses.is_dataclass(field.type) or field.name in (
                    "data", "model", "pretrain", "eval", "tasks", "adapt", "export"):
                continue
            assert comments.get(field.name), f"{cls.__name__}.{field.name} has no #: comment"
            assert f"- **`{field.name}`**" in page
    assert "- **`bottleneck_grid`** (list of integers; > 0, not empty; default `[8]`)" in page
    assert '- **`loss`** (one of "full", "sampled"; default `"full"`)' in page
    assert "- **`missing_labels`** (list of strings; default `[\"\"]`)" in page


def test_the_command_prints_or_writes_the_page(tmp_path):
    printed = CliRunner().invoke(main, ["config-docs"])
    assert printed.exit_code == 0 and printed.output == render_config_docs()
    out = tmp_path / "configuration.md"
    assert CliRunner().invoke(main, ["config-docs", "--out", str(out)]).exit_code == 0
    assert out.read_text(encoding="utf-8") == render_config_docs()
