from __future__ import annotations

import json
from pathlib import Path

from uservec.bench import run_bench


def test_run_bench_scale_quick_writes_both_files(tmp_path: Path) -> None:
    result = run_bench(tmp_path, bundle=None, quick=True, scale=True, robustness=False)
    assert set(result) == {"meta", "retrieval"}  # --scale runs only the scale benchmark
    on_disk = json.loads((tmp_path / "bench.json").read_text())
    assert on_disk["retrieval"]["catalogues"][0]["n_items"] == 5000
    assert "## Retrieval at scale" in (tmp_path / "bench.md").read_text()


def test_only_narrows_the_main_suite_to_the_named_sections(tmp_path: Path) -> None:
    result = run_bench(tmp_path, bundle=None, quick=True, scale=False, robustness=False,
                       only=["compute"])
    assert set(result) == {"meta", "compute"}
    assert "error" not in result["compute"]
