import hashlib
import time
import zipfile

import pytest

from uservec.training.data.download import download_movielens
from uservec.training.data.loaders import DataError

U_DATA = b"1\t2\t3\t881250949\n"


def tiny_zip(path, members):
    with zipfile.ZipFile(path, "w") as bundle:
        for name, content in members.items():
            bundle.writestr(name, content)
    return path


def test_offline_fails_fast_and_says_to_pass_path(tmp_path):
    started = time.perf_counter()
    with pytest.raises(DataError, match="--path"):
        download_movielens(tmp_path, url="http://127.0.0.1:9/ml-100k.zip", timeout=2)
    assert time.perf_counter() - started < 5
    assert not (tmp_path / "ml-100k.zip").exists()


def test_local_zip_is_verified_and_extracted_safely(tmp_path):
    archive = tiny_zip(tmp_path / "src.zip", {
        "ml-100k/u.data": U_DATA, "ml-100k/u.user": b"1|24|M|x|1\n", "../evil.txt": b"no",
    })
    folder = download_movielens(tmp_path / "dest", url=archive.as_uri(),
                                expected_sha256=hashlib.sha256(U_DATA).hexdigest())
    assert (folder / "u.data").read_bytes() == U_DATA
    assert (folder / "u.user").is_file()
    assert not (tmp_path / "evil.txt").exists()
    # A second call reuses the verified copy without touching the network.
    again = download_movielens(tmp_path / "dest", url="http://127.0.0.1:9/x.zip", timeout=1,
                               expected_sha256=hashlib.sha256(U_DATA).hexdigest())
    assert again == folder


def test_checksum_mismatch_is_an_error(tmp_path):
    archive = tiny_zip(tmp_path / "src.zip", {"ml-100k/u.data": U_DATA})
    with pytest.raises(DataError, match="checksum mismatch"):
        download_movielens(tmp_path / "dest", url=archive.as_uri())


def test_not_a_movielens_zip(tmp_path):
    archive = tiny_zip(tmp_path / "src.zip", {"other/file.txt": b"x"})
    with pytest.raises(DataError, match="not a MovieLens-100K zip"):
        download_movielens(tmp_path / "dest", url=archive.as_uri())
