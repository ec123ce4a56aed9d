import copy

import numpy as np
import pytest
import torch
from tiny_export import MAX_LEN, make_items

from uservec.export.parity import (
    ABS_TOL,
    ParityError,
    argmax_mismatches,
    check_parity,
    parity_batches,
    ranking_mismatches,
    top_k_overlap,
)


def _vectors(model):
    with torch.no_grad():
        return {n: model.item_vectors(n).numpy() for n in model.recommend_heads}


def test_onnxruntime_reproduces_torch_on_a_held_out_batch(fused, onnx_path):
    report = check_parity(fused, onnx_path, make_items(40, seed=7), _vectors(fused))
    assert set(report["max_abs_diff"]) == set(fused.output_names)
    assert max(report["max_abs_diff"].values()) <= ABS_TOL
    assert report["top_k_mismatched_rows"] == {"query.games": 0}
    assert report["argmax_mismatched_rows"] == {"profile.gender": 0, "profile.age": 0}
    assert report["seq_lens"] == [MAX_LEN // 2, MAX_LEN]


def test_a_graph_that_differs_from_torch_is_refused(fused, onnx_path):
    drifted = copy.deepcopy(fused)
    with torch.no_grad():
        drifted.profile_heads["age"].linear.bias.add_(1e-2)
    with pytest.raises(ParityError, match=r"profile\.age: max abs diff"):
        check_parity(drifted, onnx_path, make_items(8, seed=7), _vectors(drifted))


def test_a_graph_that_outputs_nan_is_refused(fused, onnx_path, monkeypatch):
    """np.max over a NaN is NaN and NaN > tol is False: NaN once passed as a 0.0 diff."""
    from uservec.export import parity

    real = parity.session_outputs

    def nan_user_vector(session, items):
        outputs = real(session, items)
        outputs["user_vector"] = np.full_like(outputs["user_vector"], np.nan)
        return outputs

    monkeypatch.setattr(parity, "session_outputs", nan_user_vector)
    with pytest.raises(ParityError, match=r"user_vector: max abs diff inf"):
        check_parity(fused, onnx_path, make_items(8, seed=7), _vectors(fused))


def test_parity_also_runs_a_shorter_window_and_a_batch_of_one():
    items = make_items(4)
    shapes = [b.shape for b in parity_batches(items)]
    assert shapes == [(4, MAX_LEN), (1, MAX_LEN), (4, MAX_LEN // 2)]


def test_swaps_between_tied_scores_are_not_mismatches():
    reference = np.array([[3.0, 2.0, 2.0 + 5e-6, 1.0]])
    swapped = np.array([[3.0, 2.0 + 5e-6, 2.0, 1.0]])
    assert ranking_mismatches(reference, swapped, k=3) == 0
    reordered = np.array([[3.0, 0.5, 2.0, 1.0]])  # item 1 leaves the top 3: a real difference
    assert ranking_mismatches(reference, reordered, k=3) == 1
    assert top_k_overlap(reference, reordered, k=3) == pytest.approx(2 / 3)


def test_argmax_differences_count_unless_tied():
    reference = np.array([[1.0, 1.0 + 1e-6, 0.0], [2.0, 0.0, 1.0]])
    candidate = np.array([[1.0 + 1e-6, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert argmax_mismatches(reference, candidate) == 1
