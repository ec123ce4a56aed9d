"""The exported step graph streams to the same outputs as the full graph, and the bundle says so."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from tiny_export import MAX_LEN, make_items

from uservec.contract.manifest import read_manifest
from uservec.export.parity import ParityError, torch_outputs
from uservec.export.step_graph import STEP_FILE, check_step_parity, stream_session
from uservec.training.streaming import STATE_INPUT, STATE_OUTPUT, StreamingUserModel


def test_bundle_records_the_step_graph_and_its_parity(bundle_dir, fused):
    manifest = read_manifest(bundle_dir)
    step = manifest.model.step
    assert step is not None and step.file == STEP_FILE
    assert step.state_size == StreamingUserModel(fused).state_size
    assert [o.name for o in step.outputs] == [STATE_OUTPUT, *fused.output_names]
    assert STEP_FILE in manifest.files
    assert max(manifest.parity["step"]["max_abs_diff"].values()) <= 1e-4
    graph = onnx.load(str(bundle_dir / STEP_FILE)).graph
    assert [i.name for i in graph.input] == [STATE_INPUT, "item"]


def test_streamed_graph_matches_torch_on_longer_padding(bundle_dir, fused):
    step = read_manifest(bundle_dir).model.step
    assert step is not None
    items = make_items(6, seed=3, max_len=MAX_LEN + 4)  # 4 extra PAD columns at most
    streamed = stream_session(bundle_dir / STEP_FILE, step.state_size, items)
    for name, value in torch_outputs(fused, items).items():
        np.testing.assert_allclose(streamed[name], value, atol=1e-4, err_msg=name)


def test_parity_check_refuses_a_graph_of_another_model(bundle_dir, vocab):
    from tiny_export import build_fused

    step = read_manifest(bundle_dir).model.step
    assert step is not None
    with pytest.raises(ParityError):
        check_step_parity(build_fused(vocab, seed=1), bundle_dir / STEP_FILE, step,
                          make_items(4, seed=1))
