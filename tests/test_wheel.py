"""The wheel as a user gets it: every package under the ``uservec`` namespace, the configs as
package data, and ``uservec demo`` working from an empty folder, far from the checkout's configs/.

The wheel is built from a copy of the source folders (``pip wheel --no-deps``), so the checkout
gets no build/ or egg-info. Two installs:

* in the default run (CI): the wheel goes with ``--no-deps`` into a fresh venv whose third-party
  packages come from the project's own .venv through a ``.pth`` file. A fresh install of torch and
  the ``train`` extra from the local cache takes about 90 s on the 2-core CI machine, more than
  this whole test may cost. A ``.pth`` adds the .venv's site-packages after the fresh venv's own,
  and the .venv's own ``.pth`` files (the editable install of the checkout) are not read from
  there, so the wheel's ``uservec`` is the one imported; the test checks ``uservec.__file__``.
  The demo runs with the same small overrides as tests/test_demo.py.
* marked ``slow``: ``pip install 'uservec[train] @ file://...whl' -c constraints.txt`` into a
  fresh venv with its own pip (torch==2.13.0 CPU from the local cache), then the shipped demo
  unchanged.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: repository folder -> the package it installs as (pyproject's package-dir)
PACKAGE_DIRS = {"uservec": "uservec", "training": "uservec/training", "export": "uservec/export",
                "service": "uservec/service", "configs": "uservec/configs"}
#: the shipped demo config made smaller, as in tests/test_demo.py: trains for real, in seconds
QUICK = ["--set", "pretrain.epochs=1", "--set", "adapt.max_epochs=1",
         "--set", "data.synthetic_users=200", "--set", "data.synthetic_items=60",
         "--set", "model.dim=16", "--set", "model.max_len=10"]


def _clean_env() -> dict[str, str]:
    """The environment without anything that points Python at the checkout."""
    return {k: v for k, v in os.environ.items()
            if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}


def _run(command: list[str], cwd: Path, timeout_s: float = 300) -> str:
    done = subprocess.run(command, cwd=cwd, env=_clean_env(), capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the files pyproject.toml packages."""
    source = tmp_path_factory.mktemp("wheel-source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in PACKAGE_DIRS:
        shutil.copytree(ROOT / folder, source / folder, ignore=ignore)
    dist = tmp_path_factory.mktemp("dist")
    setuptools = importlib.metadata.version("setuptools")
    # the .venv's setuptools when it is new enough: no build environment to install
    isolation = [] if int(setuptools.split(".")[0]) < 77 else ["--no-build-isolation"]
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(dist),
          f"{source}/"], cwd=dist)
    (found,) = dist.glob("uservec-*.whl")
    return found


def _expected_files() -> set[str]:
    """Every package of the repository (a folder with __init__.py) and every shipped config, as
    installed paths."""
    expected = set()
    for folder, installed in PACKAGE_DIRS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            expected.add(f"{installed}/{init.relative_to(ROOT / folder).as_posix()}")
    expected |= {f"uservec/configs/{p.name}" for p in (ROOT / "configs").glob("*.toml")}
    return expected


def test_the_wheel_holds_every_package_and_the_configs_under_one_name(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_expected_files() - names)
    assert not missing, f"not in the wheel (pyproject's packages list?): {missing}"
    assert any(n.endswith(".toml") and n.startswith("uservec/configs/") for n in names)
    top = {name.split("/")[0] for name in names}
    assert top == {"uservec", f"{wheel.name.split('-py3')[0]}.dist-info"}, top
    assert not top & {"training", "export", "service", "configs"}
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "uservec = uservec.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _venv(path: Path, with_pip: bool) -> Path:
    """A fresh venv on this interpreter's base Python; returns its python."""
    _run([sys.executable, "-m", "venv", *([] if with_pip else ["--without-pip"]), str(path)],
         cwd=path.parent)
    return path / "bin" / "python"


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    return Path(_run([str(python), "-c", code], cwd=python.parent).strip())


def _demo_and_verify(venv: Path, workdir: Path, *overrides: str) -> dict[str, object]:
    """``uservec demo --no-serve`` from an empty folder, then ``uservec bundle info`` of its
    bundle; returns the info."""
    empty = workdir / "empty"
    empty.mkdir()
    uservec = str(venv / "bin" / "uservec")
    output = _run([uservec, "demo", "--no-serve", "--out", "demo", *overrides], cwd=empty,
                  timeout_s=600)
    assert "serve it later with: uservec serve --bundle" in output
    info = json.loads(_run([uservec, "bundle", "info", "--json", "demo/bundles/current"],
                           cwd=empty))
    assert (empty / "demo" / "report.json").is_file()
    return info


def _where(python: Path, cwd: Path) -> tuple[Path, Path]:
    """Where the venv imports uservec from, and where it finds the shipped demo config."""
    code = ("import uservec; from uservec.cli.common import shipped_config; "
            "print(uservec.__file__); print(shipped_config('demo'))")
    package, config = _run([str(python), "-c", code], cwd=cwd).split()
    return Path(package), Path(config)


def test_the_installed_wheel_runs_the_demo_from_an_empty_folder(wheel: Path,
                                                                tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv", with_pip=False)
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
          str(wheel)], cwd=tmp_path)
    own = _site_packages(python)
    (own / "uservec-third-party.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    package, config = _where(python, tmp_path)
    assert package.is_relative_to(own), f"uservec imported from {package}, not the wheel"
    assert config.is_relative_to(own) and config.is_file()
    info = _demo_and_verify(tmp_path / "venv", tmp_path, *QUICK)
    assert info["verified"] is True, info


@pytest.mark.slow
def test_a_full_train_install_of_the_wheel_runs_the_shipped_demo(wheel: Path,
                                                                  tmp_path: Path) -> None:
    python = _venv(tmp_path / "venv", with_pip=True)
    _run([str(python), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
          f"uservec[train] @ {wheel.as_uri()}"], cwd=tmp_path, timeout_s=900)
    torch = _run([str(python), "-c", "import torch; print(torch.version.cuda)"], cwd=tmp_path)
    assert torch.strip() == "None", "a CUDA build of torch was installed"
    package, _ = _where(python, tmp_path)
    assert package.is_relative_to(_site_packages(python))
    info = _demo_and_verify(tmp_path / "venv", tmp_path)
    assert info["verified"] is True, info
