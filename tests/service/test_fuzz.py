"""Schemathesis against the OpenAPI document a real uvicorn server publishes for its bundle.

What the robustness benchmark runs, in small: ``schemathesis run --checks all`` (every check: a
schema-valid request must be accepted, a schema-violating one refused, answers must match their
documented status, type, headers and schema, auth must not be ignored), against a server of the
test bundle (two domains, a head without a label prior: the document's hardest rules) in the
default suite, and against a server of the demo's own bundle in the slow one.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from uservec.bench.fuzzing import demo_bundle, fuzz

pytestmark = pytest.mark.skipif(
    not Path(sys.executable).with_name("schemathesis").exists(),
    reason="schemathesis is not installed (dev extra)")


def check(result: dict) -> None:
    assert result["unique_failures"] == 0 and result["failures"] == [], result["failures"]
    assert result["operations"] >= 10 and result["generated"] > 0
    assert result["server_5xx_seen"] == 0 and result["reloads_by_fuzzer"] == 0
    assert result["passed"], result


def test_schemathesis_checks_all_finds_nothing_against_the_test_bundle(
    main_bundle: Path, tmp_path: Path
) -> None:
    check(fuzz(main_bundle, tmp_path, max_examples=8, seed=0, max_seconds=300))


@pytest.mark.slow
def test_schemathesis_checks_all_finds_nothing_against_the_demo_server(tmp_path: Path) -> None:
    bundle = demo_bundle(tmp_path / "demo", seed=0)
    try:
        check(fuzz(bundle, tmp_path, max_examples=100, seed=0, max_seconds=900))
    finally:
        shutil.rmtree(tmp_path / "demo", ignore_errors=True)
