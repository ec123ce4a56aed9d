import pytest

from uservec.training.data.download import check_movielens
from uservec.training.data.loaders import DataError


def test_check_accepts_a_copy_with_the_official_checksum(tmp_path):
    (tmp_path / "u.data").write_text("1\t2\t3\t4\n")
    (tmp_path / "u.user").write_text("1|20|M|x|0\n")
    from uservec.contract.fingerprint import sha256_file

    assert check_movielens(tmp_path, sha256_file(tmp_path / "u.data")) == tmp_path


def test_check_names_the_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"no u\.data"):
        check_movielens(tmp_path)


def test_check_rejects_a_modified_copy(tmp_path):
    (tmp_path / "u.data").write_text("tampered\n")
    (tmp_path / "u.user").write_text("")
    with pytest.raises(DataError, match="not the official"):
        check_movielens(tmp_path)
