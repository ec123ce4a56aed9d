"""Bundles with wide parts: the graph's bag input, parity, and what the service answers.

The bundle: profile ``gender`` served as wide+deep (TF-IDF logistic part added to the head),
recommend ``games`` served as wide (reduced-rank ridge from the books bag). The wide parts read
the bag of every event sent, so events older than the encoder's window change their answers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from service_bundles import BOOKS, DIM, GAMES, MAX_LEN, _domain_keys, calibration_items, make_vocab
from service_helpers import user

from uservec.contract.bags import BAG_INPUT
from uservec.contract.manifest import read_manifest

pytestmark = pytest.mark.anyio


def _wide_parts(vocab, n_games: int, seed: int):
    import torch

    from uservec.training.wide.modules import ProfileWidePart, RankingWidePart

    rng = np.random.default_rng(seed)
    ids = np.arange(2, vocab.size)
    profile = ProfileWidePart(torch.from_numpy(ids), torch.from_numpy(1 + rng.random(ids.size)),
                              torch.from_numpy(rng.normal(0, 3, (2, ids.size))),
                              torch.tensor([0.1, -0.1]))
    books = np.flatnonzero(vocab.domain_ids() == vocab.domains().index(BOOKS))
    ranking = RankingWidePart(torch.from_numpy(books),
                              torch.from_numpy(rng.normal(0, 1, (books.size + 1, 3))),
                              torch.from_numpy(rng.normal(0, 1, (3, n_games))), 2.0)
    return profile, ranking


@pytest.fixture(scope="module")
def wide_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from uservec.export.bundle import TaskExport, write_bundle
    from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
    from uservec.training.model import ClassificationHead, ItemScoringHead, NextItNet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    vocab = make_vocab()
    encoder = NextItNet(vocab.size, DIM, (1, 2), kernel_size=3)
    games = _domain_keys(vocab, GAMES)
    keep = torch.from_numpy(vocab.domain_ids() == vocab.domains().index(BOOKS))
    profile_wide, ranking_wide = _wide_parts(vocab, len(games), seed=0)
    fused = FusedUserModel(
        encoder,
        {"gender": ProfileTask(ClassificationHead(DIM, 2), wide=profile_wide,
                               served_kind="wide+deep")},
        {"games": RecommendTask(ItemScoringHead(DIM, len(games)), None, keep,
                                wide=ranking_wide, served_kind="wide")},
    ).eval()
    tasks = [
        TaskExport("gender", "profile", labels=("F", "M"), served_kind="wide+deep"),
        TaskExport("games", "recommend", domain=GAMES, source_domains=(BOOKS,), item_keys=games,
                   popularity=games, served_kind="wide"),
    ]
    out = tmp_path_factory.mktemp("wide") / "bundle"
    write_bundle(out, fused, vocab, tasks, {"name": "wide"}, "fp-wide", 0, MAX_LEN,
                 calibration_items(vocab), name="wide")
    return out


def test_the_graph_takes_the_bag_and_matches_torch(wide_bundle: Path):
    manifest = read_manifest(wide_bundle)
    assert [spec.name for spec in manifest.model.inputs] == ["items", BAG_INPUT]
    assert manifest.model.inputs[1].shape[1] == make_vocab().size
    fp32 = manifest.parity["fp32"]
    assert max(fp32["max_abs_diff"].values()) <= 1e-4
    assert manifest.model.step is None and "skipped" in manifest.parity["step"]
    kinds = {task.name: task.served_kind for task in manifest.tasks}
    assert kinds == {"gender": "wide+deep", "games": "wide"}


def _long_users() -> tuple[list[str], list[str]]:
    """Two histories with the same latest MAX_LEN events and different older ones."""
    recent = [f"b{2 * i}" for i in range(MAX_LEN)]
    older_books = [f"b{40 + 2 * i}" for i in range(6)]
    older_games = [f"g{1 + 2 * i}" for i in range(6)]
    return older_books + recent, older_games + recent


async def test_profile_answer_names_its_kind_and_reads_events_beyond_the_window(
    serve, make_settings, wide_bundle: Path
):
    first, second = _long_users()
    async with serve(make_settings(bundle_path=wide_bundle)) as served:
        response = await served.client.post(
            "/predict-profile", json={"users": [user(*first), user(*second)]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["served_kinds"] == {"gender": "wide+deep"}
    one, two = (r["attributes"]["gender"]["probabilities"] for r in body["results"])
    assert [r["events_used"] for r in body["results"]] == [MAX_LEN, MAX_LEN]
    assert abs(one["F"] - two["F"]) > 1e-3  # same window, different older events


async def test_recommend_answer_names_its_kind_and_ranks_by_the_whole_bag(
    serve, make_settings, wide_bundle: Path
):
    first, second = _long_users()
    async with serve(make_settings(bundle_path=wide_bundle)) as served:
        response = await served.client.post(
            "/recommend", json={"users": [user(*first), user(*second)], "domain": GAMES,
                                "k": 5})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["served_kind"] == "wide"
    one, two = ([item["score"] for item in r["items"]] for r in body["results"])
    assert not np.allclose(one, two)


async def test_uservec_embed_reads_the_whole_history_like_the_service(
    serve, make_settings, wide_bundle: Path, tmp_path: Path
):
    import csv

    import pyarrow.parquet as pq
    from click.testing import CliRunner

    from uservec.cli import main

    histories = dict(zip(("u1", "u2"), _long_users(), strict=True))
    source = tmp_path / "events.csv"
    with source.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["user_id", "item_id", "domain", "timestamp"])
        for user_id, items in histories.items():
            writer.writerows((user_id, item, BOOKS if item[0] == "b" else GAMES, t)
                             for t, item in enumerate(items))
    out = tmp_path / "vectors.parquet"
    result = CliRunner().invoke(main, ["embed", "--bundle", str(wide_bundle), "--input",
                                       str(source), "--out", str(out), "--heads", "--threads",
                                       "1"])
    assert result.exit_code == 0, result.output
    embedded = {row["user_id"]: row for row in pq.read_table(out).to_pylist()}
    async with serve(make_settings(bundle_path=wide_bundle)) as served:
        response = await served.client.post("/predict-profile", json={"users": [
            user(*items, user_id=user_id) for user_id, items in histories.items()]})
    for answer in response.json()["results"]:
        expected = list(answer["attributes"]["gender"]["probabilities"].values())
        np.testing.assert_allclose(embedded[answer["user_id"]]["gender_probabilities"],
                                   expected, atol=1e-5)
    assert not np.allclose(embedded["u1"]["gender_probabilities"],
                           embedded["u2"]["gender_probabilities"])


def test_int8_keeps_the_wide_parts_in_fp32_and_reads_the_bag(wide_bundle: Path, tmp_path: Path):
    import onnx

    from uservec.export.parity import open_session, session_outputs
    from uservec.export.quantize import quantize

    int8 = quantize(wide_bundle / "model.onnx", tmp_path / "model.int8.onnx", "static",
                    calibration_items(make_vocab()))
    nodes = onnx.load(str(int8)).graph.node
    # the wide parts' matrix products (named after their task) read no dequantized tensor
    dequantized = {out for n in nodes if n.op_type == "DequantizeLinear" for out in n.output}
    wide = [n for n in nodes if n.name.split("/")[1:3] in (["gender", "MatMul"],
                                                           ["games", "MatMul"])]
    assert len(wide) == 2 and all(n.op_type in ("MatMul", "Gemm") for n in wide)
    assert not any(name in dequantized for n in wide for name in n.input)
    assert any(n.op_type == "DequantizeLinear" for n in nodes)  # the encoder is int8
    items = calibration_items(make_vocab(), n=8, seed=3)
    fp32 = session_outputs(open_session(wide_bundle / "model.onnx"), items)
    quantized = session_outputs(open_session(int8), items)
    assert set(quantized) == set(fp32)
    np.testing.assert_allclose(quantized["query.games"][:, -3:], fp32["query.games"][:, -3:],
                               atol=1e-4)  # the wide query coordinates: fp32 in both
