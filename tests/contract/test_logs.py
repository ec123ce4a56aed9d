import logging

import pytest

from uservec.contract.logs import quiet_third_party


@pytest.mark.parametrize(
    ("level", "faiss_level"),
    [(logging.DEBUG, logging.DEBUG), (logging.INFO, logging.WARNING),
     (logging.WARNING, logging.WARNING)],
)
def test_faiss_import_chatter_shows_only_when_debugging(level, faiss_level):
    faiss = logging.getLogger("faiss")
    before = faiss.level
    try:
        quiet_third_party(level)
        assert faiss.level == faiss_level
    finally:
        faiss.setLevel(before)
