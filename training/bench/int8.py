"""int8 vs fp32: throughput ratio and agreement of the bundle's graph, measured in one run.

Both methods of :mod:`export.quantize` (static QDQ with calibration, dynamic) are built from the
bundle's fp32 graph and timed interleaved with it at batch 1 and batch 32, one thread, full-length
sequences. Agreement vs fp32 on held-out sequences: top-10 overlap per recommendation head and
argmax agreement per profile head. A task metric (accuracy, NDCG) needs the labelled data the
bundle was trained on, which a bundle does not carry: only agreement is reported.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from export.quantize import accuracy_report, quantize, time_models
from training.bench.common import SERVER_CORE, calibration_items, pinned, random_sequences, ratio
from uservec.manifest import read_manifest

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
    calibration = calibration_items(vocab_size, length, n=32 if quick else 128, seed=seed)
    held_out = calibration_items(vocab_size, length, n=32 if quick else 256, seed=seed + 1)
    rng = np.random.default_rng(seed)
    repeats = 3 if quick else 30
    vectors = _item_vectors(bundle)
    result: dict[str, Any] = {"cpu_note": "AMD EPYC, AVX2 only (no AVX-512 VNNI)", "methods": {}}
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[str, str | Path] = {"fp32": fp32}
        for method in tqdm(("static", "dynamic"), desc="int8", leave=False):
            paths[method] = quantize(fp32, Path(tmp) / f"{method}.onnx", method, calibration)
            report = accuracy_report(fp32, paths[method], held_out, vectors)
            result["methods"][method] = {
                "top10_overlap": report["top_k_overlap"],
                "argmax_agreement": report["argmax_agreement"],
                "max_abs_diff_user_vector": report["max_abs_diff"].get("user_vector"),
            }
        with pinned(SERVER_CORE):
            for batch in (1, 32):
                items = random_sequences(rng, batch, length, vocab_size)
                seconds = time_models(paths, items, repeats=repeats, threads=1)
                for method in ("static", "dynamic"):
                    result["methods"][method][f"speedup_batch{batch}"] = ratio(
                        seconds["fp32"], seconds[method])
                result[f"fp32_ms_batch{batch}"] = seconds["fp32"] * 1000
    result["task_metric"] = ("not measured: a bundle carries no labelled data; agreement with "
                             "fp32 is reported instead")
    return result
