"""constraints.txt pins every third-party requirement of pyproject.toml (torch excepted).

A requirement added to an extra without a pin would resolve to whatever the registry serves
that day, which is how results drift between machines (docs/reproducibility.md#pinned-versions).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    """PEP 503 normalised project name of a requirement string."""
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


def _requirements() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    for extra in project["optional-dependencies"].values():
        names |= {_name(r) for r in extra}
    return names - {"uservec"}


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin"
            pins[_name(name)] = version
    return pins


def test_every_requirement_is_pinned_except_torch() -> None:
    missing = _requirements() - set(_pins()) - {"torch"}
    assert not missing, f"add to constraints.txt: {sorted(missing)}"


def test_torch_stays_pinned_in_pyproject_only() -> None:
    assert "torch" not in _pins()  # a local '+cpu' version would break other installs
    train = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["train"]
    assert "torch==2.13.0" in train


def test_the_install_paths_use_the_constraints() -> None:
    assert "-c constraints.txt" in (ROOT / "Makefile").read_text()
    assert "-c constraints.txt" in (ROOT / "Dockerfile").read_text()
