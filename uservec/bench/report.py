"""bench.json (strict JSON, NaN as null) and bench.md (markdown tables) from a results dict."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from uservec.bench.formatting import fmt as _fmt
from uservec.bench.formatting import pct as _pct
from uservec.bench.formatting import table
from uservec.bench.scale_report import baselines_lines, data_scale_lines, ddp_lines, scale_targets
from uservec.bench.serving_report import serving_lines as _serving


def strict_json(value: Any) -> Any:
    """A copy with NaN/inf floats as None and tuples as lists: bench.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): strict_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [strict_json(v) for v in value]
    return value


def _cache(c: dict[str, Any]) -> list[str]:
    rows = []
    for backend in ("memory", "redis"):
        part = c.get(backend, {})
        if "skipped" in part:
            rows.append([backend, part["skipped"], "", "", "", "", ""])
            continue
        if part:
            rows.append([backend, _pct(part["hit_ms"]), _pct(part["miss_ms"]),
                         _pct(part["hit_server_ms"]), _pct(part["miss_server_ms"]),
                         part["miss_over_hit_p50"], part["target_hit_p50_met"]])
    return table(["backend", "hit client ms", "miss client ms", "hit server ms",
                  "miss server ms", "miss/hit p50", f"hit p50 < {c['target_hit_p50_ms']} ms"],
                 rows)


def _compute(c: dict[str, Any]) -> list[str]:
    out = [f"FLOPs counted: {c['counted']}. One thread; depth {c['depth_blocks']} blocks, "
           f"sequence length {c['sequence_length']}.", ""]
    rows = [[r["dim"], r["batch"], r["mflop_per_forward"], r["encoder_ms"], r["encoder_gflop_s"],
             r["sgemm_peak_gflop_s"], r["fraction_of_peak"], r["sgemm_same_shape_gflop_s"],
             r["fraction_of_same_shape"]] for r in c["rows"]]
    out += table(["dim", "batch", "MFLOP/forward", "encoder ms", "encoder GFLOP/s",
                  "sgemm peak GFLOP/s", "fraction of peak", "same-shape sgemm GFLOP/s",
                  "fraction of same shape"], rows)
    for r in c["rows"]:
        if "graph_opt_speedup" in r:
            ops = ", ".join(f"{k} {v}" for k, v in list(r["op_counts"].items())[:8])
            out += [f"Ablation at dim {r['dim']}: ORT graph optimisation all vs none "
                    f"{_fmt(r['graph_opt_speedup'])}x; Conv rewritten as one MatMul over k "
                    f"shifted views: {_fmt(r['matmul_formulation_speedup'])}x vs Conv "
                    f"(fraction of peak {_fmt(r['matmul_formulation_fraction_of_peak'])}, max "
                    f"|diff| {r['matmul_formulation_max_abs_diff']:.1e}). Graph ops: {ops}.", ""]
    return out


def _int8(c: dict[str, Any]) -> list[str]:
    rows = []
    for method, m in c["methods"].items():
        rows.append([method, m["speedup_batch1"], m["speedup_batch32"],
                     ", ".join(f"{k} {_fmt(v, 3)}" for k, v in m["top10_overlap"].items()),
                     ", ".join(f"{k} {_fmt(v, 3)}" for k, v in m["argmax_agreement"].items())])
    head = [f"{c['cpu_note']}; fp32 {_fmt(c['fp32_ms_batch1'])} ms at batch 1, "
            f"{_fmt(c['fp32_ms_batch32'])} ms at batch 32."
            + (f" Residual convolutions of the first {c['fp32_blocks']} block(s) kept fp32, as "
               "the bundle's export did." if c.get("fp32_blocks") else ""), "",
            *table(["int8 method", "speed vs fp32, b=1", "speed vs fp32, b=32",
                    "top-10 overlap", "argmax agreement"], rows)]
    if not isinstance(c["task_metric"], dict):
        return [*head, f"Task metric: {c['task_metric']}.", ""]
    metric_rows = []
    for task, fp32 in c["task_metric"]["fp32"].items():
        for metric, value in fp32.items():
            if not isinstance(value, float):
                continue
            held_out = "held out" if fp32.get("held_out") else "in-sample (final model's labels)"
            metric_rows.append([task, metric, held_out, _fmt(value, 4),
                                *(c["methods"][m]["task_metric_change"][task][metric] * 100
                                  for m in c["methods"])])
    return [*head, f"Task metrics on the real data of {c['task_metric']['source_run']} "
            "(change in points, int8 - fp32):", "",
            *table(["task", "metric", "data", "fp32",
                    *(f"{m} change (pts)" for m in c["methods"])], metric_rows)]


def _train(c: dict[str, Any]) -> list[str]:
    dims = sorted({r["dim"] for r in c["rows"]})
    lengths = sorted({r["length"] for r in c["rows"]})
    cell = {(r["length"], r["dim"]): r["seq_per_s"] for r in c["rows"]}
    return [f"Sequences/s of pretraining steps (batch {c['batch_size']}, {c['loss']}, "
            f"vocabulary {c['vocab_size']}, {c['depth_blocks']} blocks, {c['threads']} thread).",
            "", *table(["length \\ dim", *map(str, dims)],
                       [[length, *(cell.get((length, d)) for d in dims)] for length in lengths])]


def _retrieval(c: dict[str, Any]) -> list[str]:
    out = [f"Realistic catalogue: {c['realistic_source']}. {c['queries']} queries, recall@"
           f"{c['k']} vs exact, QPS at batch 1 on one thread.", ""]
    for cat in c["catalogues"]:
        out += [f"**{cat['catalogue']}** ({cat['n_items']:,} x {cat['dim']}; target "
                f"recall >= {c['target']['recall_at_10']} at >= "
                f"{c['target']['speedup_vs_exact']:.0f}x exact: "
                f"{_fmt(cat['target_met'])})", ""]
        out += table(["index", "params", "recall@10", "QPS b=1", "x exact", "build s", "MB"],
                     [[r["index"], json.dumps(r["params"]), r["recall_at_10"], r["qps_batch1"],
                       r["speedup_vs_exact"], r["build_s"], r["size_mb"]] for r in cat["rows"]])
    return out


def _load_rows(load: dict[str, Any]) -> list[list[Any]]:
    if not load:
        return []
    return [["load", _fmt(load["passed"]),
             f"{load['requests']:,} requests at concurrency {load['concurrency']}, "
             f"{load['failed']} failed, {_fmt(load['requests_per_s'])} req/s; RSS "
             f"{_fmt(load['rss']['first_quarter_mb'])} -> "
             f"{_fmt(load['rss']['last_quarter_mb'])} MB (growth "
             f"{_fmt(load['rss']['growth_mb'])} MB, bound {load['rss_bound_mb']} MB)"]]


def _fault_rows(redis: dict[str, Any], reload: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    if "skipped" in redis:
        rows.append(["Redis killed + restarted", "skipped", redis["skipped"]])
    elif redis:
        rows.append(["Redis killed + restarted", _fmt(redis["passed"]),
                     f"{redis['requests']:,} requests, {redis['server_errors']} 5xx, "
                     f"{redis['failed']} failed; hit rate before "
                     f"{_fmt(redis['before_kill']['hit_rate'])}, Redis down "
                     f"{_fmt(redis['redis_down']['hit_rate'])}, after restart "
                     f"{_fmt(redis['after_restart']['hit_rate'])}"])
    if reload:
        rows.append(["hot reload + corrupt bundle", _fmt(reload["passed"]),
                     f"{reload['requests']:,} requests, {reload['failed']} failed; "
                     f"{reload['reloads']} reloads {reload['reload_statuses']}; corrupt bundle: "
                     f"{reload['corrupt_reload_status']} {reload['corrupt_reload_code']}, old "
                     f"bundle kept serving: {_fmt(reload['old_bundle_kept_serving'])}"])
    return rows


def _input_rows(fuzz: dict[str, Any], hostile: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    if "skipped" in fuzz:
        rows.append(["schemathesis", "skipped", fuzz["skipped"]])
    elif fuzz:
        rows.append([f"schemathesis --checks {fuzz.get('checks', 'all')}", _fmt(fuzz["passed"]),
                     f"{fuzz.get('bundle', '')} bundle, {fuzz['operations']} operations, <= "
                     f"{fuzz['max_examples_per_operation']} examples each, "
                     f"{fuzz.get('generated')} cases ({fuzz['summary']}); "
                     f"{fuzz.get('unique_failures')} unique failures, "
                     f"{fuzz['server_5xx_seen']} 5xx, {fuzz.get('reloads_by_fuzzer', 0)} "
                     "reloads by the fuzzer"])
    if hostile:
        rows.append(["hostile inputs", _fmt(hostile["passed"]),
                     f"{hostile['inputs_tried']} inputs, {len(hostile['failures'])} failures, "
                     f"{hostile.get('server_5xx', 0)} 5xx"])
    return rows


def _slow_rows(slow: dict[str, Any]) -> list[list[Any]]:
    if not slow:
        return []
    latency = slow.get("latency_ms", {})
    saturated = slow.get("saturated", {})
    return [["stalled sockets", _fmt(slow["passed"]),
             f"{slow['sockets']} stalled connections (half in the body, half in the "
             f"head, reopened when dropped) for {slow['seconds']:g} s: "
             f"{slow['requests']:,} ordinary requests, statuses {slow['status']}, p50 "
             f"{_fmt(latency.get('p50'))} ms, p99 {_fmt(latency.get('p99'))} ms; "
             f"readiness {slow['readiness']}; stalled ones answered "
             f"{slow['stalled_answers']} after {_fmt(slow['stalled_held_s']['mean'])} s "
             f"(deadline {slow['body_timeout_s']:g} s); {slow['server_5xx']} 5xx"],
            ["readiness when saturated", _fmt(slow["passed"]),
             f"2 in-flight slots, 8 clients: statuses {saturated.get('status')}, "
             f"readiness {saturated.get('readiness')}"]]


def _robustness(c: dict[str, Any]) -> list[str]:
    fuzz, hostile = c.get("fuzz", {}), c.get("hostile", {})
    rows = [*_load_rows(c.get("load", {})),
            *_fault_rows(c.get("redis_fault", {}), c.get("reload_fault", {})),
            *_input_rows(fuzz, hostile), *_slow_rows(c.get("slow_sockets", {}))]
    out = table(["check", "passed", "details"], rows)
    if hostile.get("rows"):
        out += ["Hostile inputs (one row per case):", ""]
        out += table(["case", "request", "expected", "status", "code", "ok"],
                     [[r["case"], f"{r['method']} {r['path']}",
                       "/".join(str(s) for s in r["expected"]), r["status"], r["code"] or "",
                       _fmt(r["ok"])] for r in hostile["rows"]])
    failures = [*fuzz.get("failures", []), *hostile.get("failures", [])]
    if failures:
        out += ["Failures:", "", *(f"- `{f}`" for f in failures), ""]
    return out


def _embed(c: dict[str, Any]) -> list[str]:
    out = [f"`uservec embed` on generated Parquet event files (users scattered over the file, "
           f"about {c['mean_events_per_user']} events a user), {c['cores']} cores; chunk and "
           f"partition {c['chunk_rows']:,} / {c['partition_rows']:,} rows. One worker uses every "
           "core; N workers one thread each. Peak RSS: every process of the run together "
           "(largest single process in brackets), sampled.", ""]
    rows = [[r["events"], r["users"], r["workers"], r["users_per_s"], r["speedup_vs_1_worker"],
             r["spill_seconds"], r["embed_seconds"],
             f"{_fmt(r['peak_rss_mb'], 0)} ({_fmt(r['peak_rss_largest_process_mb'], 0)})"]
            for r in c["rows"]]
    return [*out, *table(["events", "users", "workers", "users/s", "x 1 worker", "spill s",
                          "embed s", "peak RSS MB"], rows)]


def _user_state(c: dict[str, Any]) -> list[str]:
    model = c["model"]
    out = [f"Model: dim {model['dim']}, {model['n_blocks']} blocks, max_len {model['max_len']} "
           "(this section's own bundle). One event appended to a stored user vs re-encoding the "
           "whole history with the fused graph (engine, service) or `POST /embed` (HTTP); p50 ms, "
           f"B = 1, interleaved. State {c['state_bytes']:,} bytes per user (receptive field "
           f"{c['receptive_field']}); the stored record at max_len events "
           f"{c['service_memory']['record_bytes_at_max_len']:,} bytes.", ""]
    redis = c.get("service_redis", {})
    if "round_trips_per_append" in redis:
        out += [f"Redis round trips per append: {_fmt(redis['round_trips_per_append'])}.", ""]
    rows = []
    for level, part in (("engine", c["engine"]), ("service (memory)", c["service_memory"]["rows"]),
                        ("service (Redis)", redis.get("rows", [])), ("HTTP", c["http"])):
        rows += [[level, r["events"], _fmt(r["append_ms"]["p50"], 3),
                  _fmt(r["reencode_ms"]["p50"], 3), _fmt(r["speedup_p50"], 1),
                  _fmt(r.get("speedup_min"), 1)] for r in part]
    return [*out, *table(["level", "events", "append ms", "re-encode ms", "x (p50)",
                          "x (fastest)"], rows)]


SECTIONS: list[tuple[str, str, Callable[[dict[str, Any]], list[str]]]] = [
    ("serving", "Serving overhead and micro-batching", _serving),
    ("cache", "Cache: hit vs miss", _cache),
    ("compute", "Compute efficiency", _compute),
    ("int8", "int8 vs fp32", _int8),
    ("train_speed", "Training throughput", _train),
    ("retrieval", "Retrieval at scale", _retrieval),
    ("robustness", "Reliability", _robustness),
    ("embed", "Bulk embedding", _embed),
    ("ddp", "Data-parallel pretraining", ddp_lines),
    ("baselines", "Baselines at scale", baselines_lines),
    ("data_scale", "Data larger than memory: cost curve", data_scale_lines),
    ("user_state", "User state: append vs re-encode", _user_state),
]


def targets(results: dict[str, Any]) -> list[list[Any]]:
    """(target, goal, measured, met) rows for the summary table."""
    rows: list[list[Any]] = []
    serving = results.get("serving", {}).get("target")
    listed = results.get("serving", {}).get("targets")
    if listed:
        rows += [[t["name"], t["goal"], _fmt(t["measured"]), t["met"]] for t in listed]
    elif serving:
        rows.append([f"HTTP / raw engine at concurrency {serving['concurrency']}",
                     f">= {serving['goal']}",
                     f"{_fmt(serving['ratio_vs_raw_batchc'])} vs raw at b=c, "
                     f"{_fmt(serving['ratio_vs_raw_batch1'])} vs raw at b=1", serving["met"]])
    cache = results.get("cache", {})
    for backend in ("memory", "redis"):
        part = cache.get(backend, {})
        if part and "hit_ms" in part:
            rows.append([f"cache hit p50 ({backend})", f"< {cache['target_hit_p50_ms']} ms",
                         f"{_fmt(part['hit_ms'].get('p50'))} ms client, "
                         f"{_fmt(part['hit_server_ms'].get('p50'))} ms server",
                         part["target_hit_p50_met"]])
    overhead = cache.get("hit_vs_bare")
    if overhead and "ratio_p50" in overhead:
        rows.append(["cache hit p50 server time / bare FastAPI (same JSON)",
                     f"<= {overhead['goal']}x",
                     f"{_fmt(overhead['ratio_p50'])}x ({_fmt(overhead['service_us']['p50'], 0)} "
                     f"vs {_fmt(overhead['bare_us']['p50'], 0)} us)", overhead["met"]])
    compute = results.get("compute", {}).get("target")
    if compute:
        rows.append([f"encoder fraction of sgemm peak (dim {compute['dim']}, b=1)",
                     f">= {compute['goal']}", _fmt(compute["fraction_of_peak"]), compute["met"]])
    rows += _compute_batch8(results.get("compute", {}))
    rows += _int8_target(results.get("int8", {}))
    retrieval = results.get("retrieval", {})
    for cat in retrieval.get("catalogues", []):
        best = max(cat["rows"][1:], key=lambda r: (r["recall_at_10"] >= 0.95,
                                                   r["speedup_vs_exact"]))
        rows.append([f"retrieval {cat['catalogue']} {cat['n_items']:,} items",
                     "recall@10 >= 0.95 at >= 20x exact",
                     f"{best['index']}: {_fmt(best['recall_at_10'], 3)} at "
                     f"{_fmt(best['speedup_vs_exact'], 1)}x", cat["target_met"]])
    user_state = results.get("user_state", {}).get("target")
    if user_state:
        rows.append([f"append vs re-encode at {user_state['events']} events (engine)",
                     f">= {user_state['goal']}x",
                     f"{_fmt(user_state['engine_speedup'], 1)}x engine, "
                     f"{_fmt(user_state['http_speedup'], 1)}x HTTP", user_state["met"]])
    robustness = results.get("robustness", {})
    if robustness:
        rows.append(["reliability checks", "all pass", "", robustness.get("passed", False)])
    return [*rows, *scale_targets(results)]


#: issue 23: the encoder at the default width, batch 8; int8 static at batch 32 and its task cost
TARGET_BATCH8_FRACTION = 0.55
TARGET_INT8_SPEEDUP = 1.8
TARGET_INT8_MAX_CHANGE = 0.005


def _compute_batch8(compute: dict[str, Any]) -> list[list[Any]]:
    target = compute.get("target") or {}
    row = next((r for r in compute.get("rows", []) if r.get("batch") == 8
                and r.get("dim") == target.get("dim")), None)
    if row is None:
        return []
    value = row["fraction_of_peak"]
    return [[f"encoder fraction of sgemm peak (dim {row['dim']}, b=8)",
             f">= {TARGET_BATCH8_FRACTION}", _fmt(value), value >= TARGET_BATCH8_FRACTION]]


def _int8_target(int8: dict[str, Any]) -> list[list[Any]]:
    static = (int8.get("methods") or {}).get("static")
    if not isinstance(static, dict) or "speedup_batch32" not in static:
        return []
    speedup = static["speedup_batch32"]
    changes = [(abs(v), v, f"{task} {metric}")
               for task, metrics in (static.get("task_metric_change") or {}).items()
               if isinstance(metrics, dict)
               for metric, v in metrics.items() if isinstance(v, float)]
    top = max(changes) if changes else None
    worst = ("task metrics not measured" if top is None else
             f"worst {top[1] * 100:+.2f} pt ({top[2]})")
    met = speedup >= TARGET_INT8_SPEEDUP and top is not None and top[0] <= TARGET_INT8_MAX_CHANGE
    return [["int8 static vs fp32 at b=32, worst task-metric change",
             f">= {TARGET_INT8_SPEEDUP}x, <= {TARGET_INT8_MAX_CHANGE * 100:g} pt",
             f"{_fmt(speedup)}x, {worst}", met]]


def target_list(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The summary table as bench.json's top-level ``targets``: name, goal, measured, met."""
    return [{"name": name, "goal": goal, "measured": measured, "met": met}
            for name, goal, measured, met in targets(results)]


def render(results: dict[str, Any]) -> str:
    meta = results["meta"]
    lines = ["# uservec benchmarks", "",
             f"Machine: {meta['cpu']}, {meta['cores']} cores (shared with other jobs; load "
             f"average {meta['load_before']} before, {meta['load_after']} after). "
             f"Seed {meta['seed']}. Model: {meta['model_source']}. Wall time "
             f"{meta['seconds']:.0f} s. Ratios compare two measurements taken in the same run.",
             ""]
    summary = targets(results)
    if summary:
        lines += ["## Targets", "", *table(["target", "goal", "measured", "met"], summary)]
    for key, title, render_section in SECTIONS:
        part = results.get(key)
        if part is None:
            continue
        lines += [f"## {title}", ""]
        if "error" in part:
            lines += [f"Failed: `{part['error']}`", ""]
            continue
        lines += render_section(part)
    return "\n".join(lines)


def write(results: dict[str, Any], out_dir: Path) -> None:
    clean = strict_json({**results, "targets": target_list(results)})
    (out_dir / "bench.json").write_text(json.dumps(clean, indent=2, allow_nan=False))
    (out_dir / "bench.md").write_text(render(clean))
