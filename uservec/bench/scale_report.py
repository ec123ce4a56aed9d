"""Markdown of the training-at-scale sections of bench.json (``uservec bench --scaling``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _fmt(value: Any, digits: int = 0) -> str:
    if isinstance(value, int | float):
        return f"{value:,.{digits}f}"
    return "-" if value is None else str(value)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return [*lines, *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows), ""]


def ddp_lines(c: dict[str, Any]) -> list[str]:
    out = [f"Pretraining a generated dataset ({c['users']:,} users, {c['epochs']} epochs) with "
           f"`uservec run --nproc N` ({c['backend']}, one torch thread per process, "
           f"{c['cores']} cores shared with other jobs). Same global batch at every N; largest "
           f"relative gap between the runs' epoch losses: {c['max_relative_loss_gap']:.1e}.", ""]
    rows = [[r["processes"], _fmt(r["events_per_s"]), _fmt(r["sequences_per_s"]),
             f"{r['speedup']:.2f}x", _fmt(r["wall_seconds"], 1)] for r in c["rows"]]
    return [*out, *table(["processes", "events/s", "sequences/s", "vs 1 process",
                          "wall s (with start-up)"], rows)]


def baselines_lines(c: dict[str, Any]) -> list[str]:
    out = [f"P3 baselines (target `{c['target_domain']}`) on generated data with two domains. "
           f"The ridge is exact while the smaller Gram matrix has at most {c['exact_max']:,} rows, "
           f"else rank {c['low_rank']} plus diagonal (\"by shape\"); \"exact\" forces the exact "
           "solve. Peak RSS of each baseline's stage (the process's, reset per stage).", ""]
    rows = []
    for r in c["rows"]:
        for name, b in r["baselines"].items():
            rows.append([_fmt(r["users"]), _fmt(r["events"]),
                         f"{r['train_users']:,} x {r['source_items']:,}", r["solver"], name,
                         _fmt(b["seconds"], 1), _fmt(b["ndcg_at_10"], 4),
                         _fmt(b["peak_rss_mb"])])
    return [*out, *table(["users", "events", "train users x catalogue", "solver", "baseline", "s",
                          "NDCG@10", "peak RSS MB"], rows)]


def data_scale_lines(c: dict[str, Any]) -> list[str]:
    out = [f"Generated events (the demo's generator scaled; items = events / 1,000) prepared in "
           f"chunks of {c['chunk_rows']:,} rows into memory-mapped arrays, then pretraining on "
           f"them (dim {c['dim']}, windows of {c['max_len']}, batch {c['batch_size']}, sampled "
           f"softmax, one thread) for at most {c['epoch_seconds_budget']:.0f} s of an epoch. "
           "Each stage in its own process; peak RSS is that process's high-water mark.", ""]
    rows = [[_fmt(r["events"]), _fmt(r["prepare"]["users"]), _fmt(r["file_mb"], 1),
             _fmt(r["prepare"]["seconds"], 1), f"{r['prepare_seconds_per_event_vs_smallest']}x",
             _fmt(r["prepare"]["peak_rss_mb"]), _fmt(r["epoch"]["events_per_s"]),
             f"{r['epoch']['epoch_fraction']:.0%}", _fmt(r["epoch"]["epoch_seconds_projected"]),
             _fmt(r["epoch"]["peak_rss_mb"])] for r in c["rows"]]
    return [*out, *table(["events", "users", "Parquet MB", "prepare s", "s/event vs smallest",
                          "prepare peak RSS MB", "train events/s", "epoch done",
                          "epoch s (projected)", "train peak RSS MB"], rows)]


def scale_targets(results: dict[str, Any]) -> list[list[Any]]:
    """(target, goal, measured, met) rows of the scaling sections."""
    data = results.get("data_scale")
    if not data or "rows" not in data:
        return []
    largest = data["rows"][-1]
    peak = max(largest["prepare"]["peak_rss_mb"], largest["epoch"]["peak_rss_mb"])
    growth = largest["prepare_seconds_per_event_vs_smallest"]
    return [[f"peak RSS at {largest['events']:,} events", f"<= {data['rss_target_mb']:,} MB",
             f"{peak:,.0f} MB", data["rss_target_met"]],
            ["preparation time growth", "no faster than linear",
             f"{growth}x the smallest size's seconds per event", growth <= 1.2]]
