"""int8 vs fp32: throughput ratio and agreement of the bundle's graph, measured in one run.

Both methods of :mod:`export.quantize` (static QDQ with calibration, dynamic) are built from the
bundle's fp32 graph and timed interleaved with it at batch 1 and batch 32, one thread, full-length
sequences. Agreement vs fp32 on held-out sequences: top-10 overlap per recommendation head and
argmax agreement per profile head. Task metrics (P1 NDCG@10, P3 NDCG@10 on held-out test users,
P2 accuracy / macro-F1) need the labelled data the bundle was trained on, which a bundle does not
carry: they are measured when the bundle names its run (``config.source_run``, set by ``uservec
export``) and that run is on this machine (``uservec bench --bundle bundles/ciao --only int8``);
then the int8 graphs are also calibrated on the run's real sequences. The residual-stream
convolutions the bundle's export kept in fp32 (``parity.int8.fp32_blocks``) stay fp32 here too.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from uservec.bench.common import (
    SERVER_CORE,
    calibration_items,
    cpu_description,
    pinned,
    random_sequences,
    ratio,
)
from uservec.contract.manifest import read_manifest
from uservec.export.quantize import accuracy_report, quantize, time_models
from uservec.export.task_metrics import evaluator_for_bundle, metric_change

logger = logging.getLogger(__name__)


def _item_vectors(bundle: Path) -> dict[str, np.ndarray]:
    manifest = read_manifest(bundle)
    return {task.name: np.load(bundle / task.items_file) for task in manifest.tasks
            if task.kind == "recommend" and task.items_file}


def run_int8(bundle: Path, quick: bool, seed: int) -> dict[str, Any]:
    """Static and dynamic int8 vs fp32: speed ratio per batch size, agreement."""
    manifest = read_manifest(bundle)
    length = manifest.model.max_len
    vocab_size = len(json.loads((bundle / manifest.vocab_file).read_text())["keys"]) + 2
    fp32 = bundle / manifest.model.file
    real = evaluator_for_bundle(bundle)
    calibration = calibration_items(vocab_size, length, n=32 if quick else 128, seed=seed)
    if real is not None:
        calibration = real[1][: 32 if quick else 256]
    held_out = calibration_items(vocab_size, length, n=32 if quick else 256, seed=seed + 1)
    # the residual convolutions the bundle's export kept fp32, so the bench times the shipped twin
    fp32_blocks = int((manifest.parity.get("int8") or {}).get("fp32_blocks") or 0)
    rng = np.random.default_rng(seed)
    repeats = 3 if quick else 30
    vectors = _item_vectors(bundle)
    result: dict[str, Any] = {"cpu_note": cpu_description(), "methods": {},
                              "fp32_blocks": fp32_blocks}
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, str | Path] = {"fp32": fp32}
        if real is not None:
            result["task_metric"] = {"fp32": real[0](fp32),
                                     "source_run": manifest.config.get("source_run")}
        for method in tqdm(("static", "dynamic"), desc="int8", leave=False):
            paths[method] = quantize(fp32, Path(tmp) / f"{method}.onnx", method, calibration,
                                     fp32_blocks)
            report = accuracy_report(fp32, paths[method], held_out, vectors)
            result["methods"][method] = {
                "top10_overlap": report["top_k_overlap"],
                "argmax_agreement": report["argmax_agreement"],
                "max_abs_diff_user_vector": report["max_abs_diff"].get("user_vector"),
            }
            if real is not None:
                measured = real[0](paths[method])
                result["task_metric"][method] = measured
                result["methods"][method]["task_metric_change"] = metric_change(
                    result["task_metric"]["fp32"], measured)
        with pinned(SERVER_CORE):
            for batch in (1, 32):
                items = random_sequences(rng, batch, length, vocab_size)
                seconds = time_models(paths, items, repeats=repeats, threads=1)
                for method in ("static", "dynamic"):
                    result["methods"][method][f"speedup_batch{batch}"] = ratio(
                        seconds["fp32"], seconds[method])
                result[f"fp32_ms_batch{batch}"] = seconds["fp32"] * 1000
    if real is None:
        result["task_metric"] = ("not measured: the bundle names no run on this machine (pass "
                                 "--bundle of a real run's export); agreement with fp32 only")
    return result
