"""Publishing a finished bundle folder: its permissions, a flush to disk and an atomic rename.

A bundle is written into a temporary sibling of its destination and renamed into place only once
it verifies, so a crash or a failed check never leaves a half-written bundle where a server
looks; an earlier bundle is replaced only when the folder really is one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from uservec.export import ExportError

#: (folder mode, file mode): world-readable by default, owner-only when private
MODES = {False: (0o755, 0o644), True: (0o700, 0o600)}


def set_permissions(root: Path, private: bool = False) -> None:
    """Give every folder and file of a bundle its mode (``mkdtemp`` makes the root 0700)."""
    folder_mode, file_mode = MODES[private]
    for path in [root, *root.rglob("*")]:
        path.chmod(folder_mode if path.is_dir() else file_mode)


def fsync_tree(root: Path) -> None:
    """Flush every file and directory so the rename publishes data that is on disk."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def check_replaceable(out_dir: Path, overwrite: bool) -> None:
    """Refuse to write over anything but an earlier bundle (or an empty folder).

    ``overwrite`` replaces the whole folder, so pointed at a run directory (``--out runs/x``) or
    a parent of several, it would delete checkpoints and reports: only a folder holding a
    bundle manifest, or nothing, may be replaced.
    """
    if not out_dir.name:
        raise ExportError(f"{out_dir}: not a folder a bundle can be written to")
    if not out_dir.exists():
        return
    if not overwrite:
        raise ExportError(f"{out_dir} already exists; pass overwrite=True to replace it")
    if not out_dir.is_dir():
        raise ExportError(f"{out_dir} exists and is not a folder; refusing to replace it")
    if any(out_dir.iterdir()) and not (out_dir / "manifest.json").is_file():
        raise ExportError(
            f"{out_dir} is not a bundle (no manifest.json) and not empty; refusing to replace "
            "it: write the bundle to a folder of its own"
        )


def publish(tmp: Path, out_dir: Path, overwrite: bool) -> None:
    """Rename the finished bundle into place; an old bundle is moved aside first, then deleted."""
    if out_dir.exists():
        check_replaceable(out_dir, overwrite)
        old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
        out_dir.rename(old)
        tmp.rename(out_dir)
        shutil.rmtree(old)
    else:
        tmp.rename(out_dir)
