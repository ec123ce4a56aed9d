"""Per-output subgraphs of a bundle: smaller than the fused graph, same values."""

from __future__ import annotations

import numpy as np
from tiny_export import make_items

from uservec.contract.manifest import read_manifest
from uservec.export.parity import open_session, session_outputs, torch_outputs


def test_each_output_has_a_smaller_subgraph_with_the_fused_graphs_values(bundle_dir, fused):
    manifest = read_manifest(bundle_dir)
    graphs = {spec.name: spec for spec in manifest.model.graphs}
    assert sorted(graphs) == sorted(fused.output_names)
    items = make_items(7, seed=11)
    full = session_outputs(open_session(bundle_dir / manifest.model.file), items)
    expected = torch_outputs(fused, items)
    for name, spec in graphs.items():
        assert spec.outputs == [name]
        assert manifest.files[spec.file]  # checksummed like every file
        assert spec.nodes < (manifest.model.nodes or 0)
        part = session_outputs(open_session(bundle_dir / spec.file), items)
        assert list(part) == [name]
        np.testing.assert_allclose(part[name], full[name], atol=1e-4)
        np.testing.assert_allclose(part[name], expected[name], atol=1e-4)
    # the user vector reads no task pass: its graph is a fraction of the fused one
    assert graphs["user_vector"].nodes * 2 < (manifest.model.nodes or 0)


def test_the_int8_twin_has_int8_subgraphs(bundle_dir):
    manifest = read_manifest(bundle_dir)
    assert manifest.model.int8_file
    for spec in manifest.model.graphs:
        assert spec.int8_file and manifest.files[spec.int8_file]
        items = make_items(3, seed=2)
        part = session_outputs(open_session(bundle_dir / spec.int8_file), items)
        full = session_outputs(open_session(bundle_dir / manifest.model.int8_file), items)
        np.testing.assert_allclose(part[spec.name], full[spec.name], atol=1e-4)
