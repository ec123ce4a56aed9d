from __future__ import annotations

import itertools
import json

import pyarrow.parquet as pq

from uservec.bench import run_bench
from uservec.bench.common import bundle_items
from uservec.bench.embed import MEAN_EVENTS, write_events


def test_generated_events_scatter_users_over_the_file(quick_bundle, tmp_path):
    path = tmp_path / "events.parquet"
    n_users = write_events(path, 2_000, bundle_items(quick_bundle), seed=0)
    table = pq.read_table(path)
    assert table.num_rows == 2_000 and n_users == 2_000 // MEAN_EVENTS
    users = table.column("user_id").to_pylist()
    # not grouped: most users reappear after other users' events
    runs = sum(1 for a, b in itertools.pairwise(users) if a != b) + 1
    assert runs > 10 * len(set(users))


def test_bench_embed_runs_one_and_several_workers_and_reports_them(quick_bundle, tmp_path):
    result = run_bench(tmp_path, bundle=quick_bundle, quick=True, scale=False, robustness=False,
                       embed=True)
    assert set(result) == {"meta", "embed"}  # --embed runs only the embedding benchmark
    section = json.loads((tmp_path / "bench.json").read_text())["embed"]
    assert "error" not in section, section
    one, many = section["rows"]
    assert (one["workers"], many["workers"]) == (1, section["workers_compared"][1]) and \
        many["workers"] >= 2
    for row in (one, many):
        assert row["users_per_s"] > 0 and row["peak_rss_mb"] >= row["peak_rss_largest_process_mb"]
        assert row["peak_rss_largest_process_mb"] > 20  # a sampled Python process, not zero
        assert row["max_rows_held"] <= 1_000 < row["events"]  # quick: 1000-row chunks
    assert one["speedup_vs_1_worker"] == 1.0
    page = (tmp_path / "bench.md").read_text()
    assert "## Bulk embedding" in page and "users scattered over the file" in page
    assert f"| {one['events']} | {one['users']} | 1 |" in page.replace(",", "")
