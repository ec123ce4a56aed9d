"""ONNX vs PyTorch parity: an export is refused unless onnxruntime reproduces torch.

What a user would notice is a different recommendation or a different predicted label, so besides
the raw max abs difference the check compares top-k item rankings (scored through the item vectors)
and argmax labels, excusing only swaps between near-tied scores.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from uservec.contract.bags import BAG_INPUT, graph_feed
from uservec.contract.manifest import DISABLED_OPTIMIZERS
from uservec.export import ExportError
from uservec.export.onnx_export import INPUT_NAME
from uservec.training.fused import PROFILE_PREFIX, QUERY_PREFIX, FusedUserModel

log = logging.getLogger(__name__)

#: max abs difference allowed between torch and onnxruntime on vectors and logits
ABS_TOL = 1e-4
#: ranking or argmax differences between scores closer than this are ties, not errors
TIE_TOL = 1e-5
TOP_K = 10


class ParityError(ExportError):
    """onnxruntime does not reproduce the torch model within tolerance."""


def torch_outputs(model: FusedUserModel, items: np.ndarray) -> dict[str, np.ndarray]:
    """Run the fused torch model on ``items`` (B, L); outputs by name.

    A model with wide parts gets each row's own items as its bag (:func:`graph_feed`'s default),
    exactly what :func:`session_outputs` feeds the graph.
    """
    rows = np.ascontiguousarray(items, dtype=np.int64)
    args = [torch.from_numpy(rows)]
    if model.needs_bag:
        size = int(model.encoder.vocab_size)  # type: ignore[arg-type]
        args.append(torch.from_numpy(graph_feed([INPUT_NAME, BAG_INPUT], rows, size)[BAG_INPUT]))
    with torch.no_grad():
        values = model.eval()(*args)
    return {n: v.numpy() for n, v in zip(model.output_names, values, strict=True)}


def session_outputs(session: ort.InferenceSession, items: np.ndarray,
                    bags: Sequence[np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Run an onnxruntime session on ``items`` (B, L); outputs by name.

    ``bags``: each row's bag ids over every event the user has (what the service sends a graph
    with wide parts); without them the bag is the window's own items.
    """
    names = [o.name for o in session.get_outputs()]
    inputs = session.get_inputs()
    size = int(inputs[1].shape[1]) if len(inputs) > 1 else 0
    feed = graph_feed([i.name for i in inputs], np.ascontiguousarray(items, dtype=np.int64), size,
                      bags)
    values = session.run(names, feed)
    return dict(zip(names, values, strict=True))


def open_session(path: str | Path, threads: int = 1) -> ort.InferenceSession:
    """CPU onnxruntime session with a fixed thread count (comparable timings, shared machine)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"],
                                disabled_optimizers=list(DISABLED_OPTIMIZERS))


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """(B, k) indices of the highest scores, best first; ties broken by the lower index."""
    k = min(k, scores.shape[1])
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def ranking_mismatches(
    reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K, tie_tol: float = TIE_TOL
) -> int:
    """Rows whose top-k differs, counting a position only if the two items' scores are not tied."""
    ref_top, cand_top = top_k(reference, k), top_k(candidate, k)
    rows = np.arange(reference.shape[0])[:, None]
    differs = ref_top != cand_top
    gap = np.abs(reference[rows, ref_top] - reference[rows, cand_top])
    return int(np.any(differs & (gap >= tie_tol), axis=1).sum())


def argmax_mismatches(
    reference: np.ndarray, candidate: np.ndarray, tie_tol: float = TIE_TOL
) -> int:
    """Rows whose argmax differs, unless the two classes' reference logits are tied."""
    ref_arg, cand_arg = reference.argmax(axis=1), candidate.argmax(axis=1)
    rows = np.arange(reference.shape[0])
    gap = np.abs(reference[rows, ref_arg] - reference[rows, cand_arg])
    return int(((ref_arg != cand_arg) & (gap >= tie_tol)).sum())


def top_k_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = TOP_K) -> float:
    """Mean fraction of the reference top-k that the candidate's top-k also holds."""
    ref_top, cand_top = top_k(reference, k), top_k(candidate, k)
    hits = [len(set(r) & set(c)) for r, c in zip(ref_top.tolist(), cand_top.tolist(), strict=True)]
    return float(np.mean(hits) / ref_top.shape[1])


def compare_outputs(
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    item_vectors: Mapping[str, np.ndarray],
    k: int = TOP_K,
    tie_tol: float = TIE_TOL,
) -> dict[str, Any]:
    """Per-output differences between two runs of the same graph on the same batch."""
    if set(reference) != set(candidate):
        raise ExportError(f"outputs differ: {sorted(reference)} vs {sorted(candidate)}")
    report: dict[str, Any] = {
        "max_abs_diff": {},
        "top_k_mismatched_rows": {},
        "top_k_overlap": {},
        "argmax_mismatched_rows": {},
        "argmax_agreement": {},
    }
    for name, ref in reference.items():
        cand = candidate[name]
        if ref.shape != cand.shape:
            raise ExportError(f"output {name!r}: shape {cand.shape}, expected {ref.shape}")
        report["max_abs_diff"][name] = max_abs_diff(ref, cand)
        if name.startswith(QUERY_PREFIX):
            vectors = item_vectors[name.removeprefix(QUERY_PREFIX)]
            ref_scores, cand_scores = ref @ vectors.T, cand @ vectors.T
            report["top_k_mismatched_rows"][name] = ranking_mismatches(
                ref_scores, cand_scores, k, tie_tol
            )
            report["top_k_overlap"][name] = top_k_overlap(ref_scores, cand_scores, k)
        elif name.startswith(PROFILE_PREFIX):
            report["argmax_mismatched_rows"][name] = argmax_mismatches(ref, cand, tie_tol)
            agree = ref.argmax(axis=1) == cand.argmax(axis=1)
            report["argmax_agreement"][name] = float(agree.mean())
    return report


def max_abs_diff(reference: np.ndarray, candidate: np.ndarray) -> float:
    """Largest absolute difference; ``inf`` when either side holds a NaN or an infinity.

    ``np.max`` of an array with a NaN is NaN, and ``NaN > tol`` is False: a graph that produced
    NaN would have passed a plain tolerance check.
    """
    if not (np.isfinite(reference).all() and np.isfinite(candidate).all()):
        return math.inf
    return float(np.max(np.abs(reference - candidate), initial=0.0))


def parity_batches(items: np.ndarray) -> list[np.ndarray]:
    """The held-out batch at full length, cut to half its window, and as a batch of one.

    The graph has dynamic batch and sequence axes; checking only the traced shape would miss an
    axis baked in as a constant.
    """
    length = items.shape[1]
    batches = [items, items[:1]]
    if length > 1:
        batches.append(items[:, length - max(1, length // 2) :])
    return batches


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    """Worst case over batches: the largest diff, the summed mismatch counts, the lowest agreement.

    The batches overlap (see :func:`parity_batches`), so a mismatch count may exceed the number
    of distinct sequences: it counts mismatched rows over all batches checked.
    """
    merged: dict[str, Any] = {}
    for key in reports[0]:
        values: dict[str, float] = {}
        for report in reports:
            for name, value in report[key].items():
                if key in ("top_k_overlap", "argmax_agreement"):
                    values[name] = min(values.get(name, 1.0), value)
                elif key == "max_abs_diff":
                    values[name] = max(values.get(name, 0.0), value)
                else:
                    values[name] = values.get(name, 0) + value
        merged[key] = values
    return merged


def check_parity(
    model: FusedUserModel,
    onnx_path: str | Path,
    items: np.ndarray,
    item_vectors: Mapping[str, np.ndarray],
    abs_tol: float = ABS_TOL,
    tie_tol: float = TIE_TOL,
    k: int = TOP_K,
) -> dict[str, Any]:
    """Raise :class:`ParityError` unless onnxruntime matches torch on ``items``; return numbers."""
    if items.ndim != 2 or items.shape[0] == 0:
        raise ExportError(f"parity needs a non-empty (B, L) batch, got shape {items.shape}")
    session = open_session(onnx_path)
    reports = [
        compare_outputs(
            torch_outputs(model, b), session_outputs(session, b), item_vectors, k, tie_tol
        )
        for b in parity_batches(items)
    ]
    report = merge_reports(reports)
    problems = [
        f"{name}: max abs diff {diff:.3g} > {abs_tol:g}"
        for name, diff in report["max_abs_diff"].items()
        if diff > abs_tol
    ]
    problems += [
        f"{name}: top-{k} differs in {rows} row(s)"
        for name, rows in report["top_k_mismatched_rows"].items()
        if rows
    ]
    problems += [
        f"{name}: argmax differs in {rows} row(s)"
        for name, rows in report["argmax_mismatched_rows"].items()
        if rows
    ]
    if problems:
        raise ParityError(
            f"{onnx_path}: onnxruntime does not reproduce torch: " + "; ".join(problems)
        )
    report.update(
        n_sequences=int(items.shape[0]),
        seq_lens=sorted({int(b.shape[1]) for b in parity_batches(items)}),
        abs_tol=abs_tol,
        tie_tol=tie_tol,
        k=k,
    )
    log.info("parity ok: max abs diff %.3g", max(report["max_abs_diff"].values()))
    return report


def parity_summary(parity: dict[str, Any]) -> list[str]:
    """One line per graph: how close onnxruntime came to torch, and the int8 verdict."""
    lines = []
    fp32 = parity.get("fp32")
    if fp32:
        worst = max(fp32.get("max_abs_diff", {}).values(), default=0.0)
        lines.append(f"fp32 parity: max abs diff {worst:.2e} over {fp32.get('n_sequences')} "
                     "held-out sequences")
    int8 = parity.get("int8")
    if int8:
        verdict = "kept" if int8.get("accepted") else "refused (fp32 only)"
        cosine = int8.get("user_vector_cosine", {}).get("min")
        kept_fp32 = int8.get("fp32_blocks") or 0
        lines.append(
            f"int8 ({int8.get('method')}): {verdict}; {int8.get('speedup_vs_fp32', 0):.2f}x fp32 "
            f"speed; user-vector cosine min {cosine if cosine is None else f'{cosine:.4f}'}"
            + (f"; residual convolutions of {kept_fp32} block(s) kept fp32" if kept_fp32 else "")
        )
    return lines
