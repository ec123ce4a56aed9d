"""The suite's own layout: pytest imports test files by basename (the test folders are not
packages), so two files with one name stop the whole run at collection."""

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).parent


def test_every_test_module_has_a_unique_basename() -> None:
    names = Counter(path.name for path in TESTS.rglob("test_*.py"))
    assert [name for name, count in names.items() if count > 1] == []
