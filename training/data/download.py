"""Download MovieLens-100K from GroupLens, checked against the official u.data checksum.

Usage::

    from uservec.training.data.download import download_movielens
    folder = download_movielens(Path("data-cache"))  # -> data-cache/ml-100k

Offline machines fail fast with a :class:`DataError` that says to pass ``--path`` to a local copy.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import urllib.error
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from uservec.contract.fingerprint import sha256_file
from uservec.training.data.loaders import DataError

logger = logging.getLogger(__name__)

ML100K_URL = "https://files.grouplens.org/datasets/movielens/ml-100k.zip"
#: sha256 of the official u.data (also pinned in /work/shared/data/movielens-100k/SOURCE.txt)
ML100K_U_DATA_SHA256 = "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490"
_FOLDER = "ml-100k"


def _fetch(url: str, target: Path, timeout: float) -> None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
        target.unlink(missing_ok=True)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"cannot download MovieLens-100K from {url}: {reason}. If this machine is offline, "
            "pass --path to a local copy of the ml-100k folder (the one holding u.data)"
        ) from exc


def _extract(archive: Path, dest: Path, expected_sha256: str) -> Path:
    """Verify u.data inside the zip, then extract only ``ml-100k/`` members (no path escapes)."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            names = bundle.namelist()
            data_member = f"{_FOLDER}/u.data"
            if data_member not in names:
                raise DataError(f"{archive}: not a MovieLens-100K zip (no {data_member})")
            digest = hashlib.sha256(bundle.read(data_member)).hexdigest()
            if digest != expected_sha256:
                raise DataError(
                    f"{archive}: u.data checksum mismatch (got {digest}, expected "
                    f"{expected_sha256}); the download is corrupt or not the official file"
                )
            for name in names:
                parts = PurePosixPath(name).parts
                if not parts or parts[0] != _FOLDER or ".." in parts or name.endswith("/"):
                    continue
                target = dest.joinpath(*parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(name))
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a valid zip file: {exc}") from exc
    return dest / _FOLDER


def download_movielens(
    dest: Path,
    url: str = ML100K_URL,
    timeout: float = 10.0,
    expected_sha256: str = ML100K_U_DATA_SHA256,
) -> Path:
    """Download and unzip ml-100k under ``dest``; returns ``dest/ml-100k`` (reused if valid)."""
    dest = Path(dest)
    folder = dest / _FOLDER
    if (folder / "u.data").is_file() and sha256_file(folder / "u.data") == expected_sha256:
        logger.info("MovieLens-100K already in %s", folder)
        return folder
    dest.mkdir(parents=True, exist_ok=True)
    archive = dest / "ml-100k.zip"
    logger.info("downloading %s", url)
    _fetch(url, archive, timeout)
    folder = _extract(archive, dest, expected_sha256)
    archive.unlink(missing_ok=True)
    logger.info("MovieLens-100K ready in %s", folder)
    return folder


def check_movielens(folder: Path, expected_sha256: str = ML100K_U_DATA_SHA256) -> Path:
    """Check a local MovieLens-100K copy (``--path``) without copying it anywhere."""
    folder = Path(folder)
    for name in ("u.data", "u.user"):
        if not (folder / name).is_file():
            raise DataError(f"{folder}: no {name} here; point --path at the ml-100k folder")
    digest = sha256_file(folder / "u.data")
    if digest != expected_sha256:
        raise DataError(
            f"{folder / 'u.data'}: checksum {digest[:12]}… is not the official file's "
            f"({expected_sha256[:12]}…)"
        )
    return folder
