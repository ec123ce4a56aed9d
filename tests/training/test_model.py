from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from uservec.contract.ids import NUM_RESERVED, PAD_ID
from uservec.training.model import (
    ClassificationHead,
    ItemScoringHead,
    NextItemHead,
    NextItNet,
    keep_domains,
    read_out,
)

V, D, L = 64, 16, 8


def make_model(seed: int = 0, dilations: tuple[int, ...] = (1, 2)) -> NextItNet:
    torch.manual_seed(seed)
    return NextItNet(V, D, dilations).eval()


def random_items(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(NUM_RESERVED, V, (batch, length), generator=g)


def test_forward_shapes_and_user_vector_is_last_position() -> None:
    model = make_model()
    items = random_items(3, L)
    hidden = model(items)
    assert hidden.shape == (3, L, D)
    torch.testing.assert_close(model.user_vector(items), hidden[:, -1])


@pytest.mark.parametrize("placement", [None, "serial", "parallel"])
@pytest.mark.parametrize("item_rank", [0, 3])
def test_changing_a_later_event_never_changes_earlier_outputs(
    placement: str | None, item_rank: int
) -> None:
    model = make_model()
    task = None
    if placement is not None:
        model.add_task("t", bottleneck=4, placement=placement, item_rank=item_rank)
        for p in model.task_parameters("t"):  # non-identity patches
            torch.nn.init.normal_(p, std=0.5)
        task = "t"
    items = random_items(2, L)
    items[:, :2] = PAD_ID
    changed = items.clone()
    changed[:, 5] = (changed[:, 5] - NUM_RESERVED + 1) % (V - NUM_RESERVED) + NUM_RESERVED
    before, after = model(items, task), model(changed, task)
    torch.testing.assert_close(before[:, :5], after[:, :5], rtol=0, atol=0)
    assert not torch.allclose(before[:, 5:], after[:, 5:])


@settings(max_examples=25, deadline=None)
@given(
    length=st.integers(1, L),
    extra=st.integers(1, 6),
    seed=st.integers(0, 1000),
    placement=st.sampled_from([None, "serial", "parallel"]),
    item_rank=st.sampled_from([0, 2]),
)
def test_output_at_real_positions_ignores_amount_of_left_padding(
    length: int, extra: int, seed: int, placement: str | None, item_rank: int
) -> None:
    model = make_model(dilations=(1, 2, 4))
    task = None
    if placement is not None:
        model.add_task("t", bottleneck=4, placement=placement, item_rank=item_rank)
        for p in model.task_parameters("t"):
            torch.nn.init.normal_(p, std=0.5)
        task = "t"
    events = random_items(1, length, seed)
    padded = torch.cat([torch.full((1, extra), PAD_ID), events], dim=1)
    short, long = model(events, task), model(padded, task)
    torch.testing.assert_close(long[:, extra:], short, rtol=1e-5, atol=1e-5)
    assert torch.all(long[:, :extra] == 0)


def test_batch_padded_to_longest_member_gives_each_users_own_vector() -> None:
    model = make_model(dilations=(1, 2, 4))
    sequences = [random_items(1, n, seed=n)[0] for n in (2, 5, 8)]
    batch = torch.stack([torch.cat([torch.full((L - len(s),), PAD_ID), s]) for s in sequences])
    together = model.user_vector(batch)
    for row, sequence in enumerate(sequences):
        alone = model.user_vector(sequence.unsqueeze(0))
        torch.testing.assert_close(together[row], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("readout", ["last", "mean"])
def test_readouts_ignore_left_padding(readout: str) -> None:
    model = make_model(dilations=(1, 2, 4))
    sequence = random_items(1, 5, seed=3)[0]
    padded = torch.cat([torch.full((L - 5,), PAD_ID), sequence]).unsqueeze(0)
    torch.testing.assert_close(model.user_vector(padded, readout=readout),  # type: ignore[arg-type]
                               model.user_vector(sequence.unsqueeze(0), readout=readout),  # type: ignore[arg-type]
                               rtol=1e-5, atol=1e-5)


def test_mean_readout_averages_the_real_positions_only() -> None:
    hidden = torch.arange(12.0).reshape(1, 3, 4)
    hidden[0, 0] = 0.0  # PAD row, as the encoder leaves it
    items = torch.tensor([[PAD_ID, 5, 6]])
    torch.testing.assert_close(read_out(hidden, items, "mean"), hidden[:, 1:].mean(1))
    torch.testing.assert_close(read_out(hidden, items, "last"), hidden[:, -1])
    all_pad = torch.full((1, 3), PAD_ID)
    assert torch.equal(read_out(torch.zeros(1, 3, 4), all_pad, "mean"), torch.zeros(1, 4))
    with pytest.raises(ValueError, match="readout"):
        read_out(hidden, items, "max")  # type: ignore[arg-type]


@pytest.mark.parametrize("placement", ["serial", "parallel"])
@pytest.mark.parametrize("own_layer_norms", [True, False])
@pytest.mark.parametrize("item_rank", [0, 3])
def test_new_patch_is_identity(placement: str, own_layer_norms: bool, item_rank: int) -> None:
    model = make_model()
    items = random_items(4, L)
    items[0, :3] = PAD_ID
    before = model(items)
    model.add_task("t", 4, placement, own_layer_norms, item_rank)
    torch.testing.assert_close(model(items, task="t"), before, rtol=0, atol=0)


def test_item_patch_adds_its_low_rank_vectors_to_the_item_embeddings() -> None:
    # no blocks: the encoder's output is the (patched) embedding of each event, zero at PAD
    torch.manual_seed(0)
    model = NextItNet(V, D, ()).eval()
    model.add_task("t", 4, item_rank=3)
    patch = model.item_patches["t"]
    torch.nn.init.normal_(patch.up)
    items = random_items(2, L)
    items[0, :2] = PAD_ID
    expected = model.embedding(items) + patch.items[items] @ patch.up
    expected = expected * (items != PAD_ID).unsqueeze(-1)
    torch.testing.assert_close(model(items, "t"), expected)
    assert torch.all(model(items, "t")[0, :2] == 0)
    assert model.tasks["t"].item_rank == 3
    assert sum(p.numel() for p in patch.parameters()) == V * 3 + 3 * D
    with pytest.raises(ValueError, match="item_rank"):
        model.add_task("u", 4, item_rank=-1)


def test_task_modules_live_in_the_state_dict_under_their_task_name() -> None:
    model = make_model()
    backbone_keys = set(model.state_dict())
    model.add_task("gender", 4, item_rank=2)
    new_keys = set(model.state_dict()) - backbone_keys
    assert new_keys and all(".gender." in key for key in new_keys)
    assert "item_patches.gender.items" in new_keys
    assert {id(p) for p in model.task_parameters("gender")} == {
        id(p) for name, p in model.named_parameters() if ".gender." in name
    }


def train_task(model: NextItNet, task: str, items: torch.Tensor, steps: int = 5) -> None:
    optimizer = torch.optim.SGD(model.task_parameters(task), lr=0.5)
    for _ in range(steps):
        loss = model.user_vector(items, task).pow(2).sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_training_a_task_leaves_backbone_and_other_tasks_untouched() -> None:
    model = make_model().train()
    items = random_items(4, L)
    model.add_task("a", 4, "serial", item_rank=2)
    model.add_task("b", 4, "parallel", item_rank=3)
    model.freeze_backbone()
    backbone = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert backbone and all(".a." not in n and ".b." not in n for n in backbone)
    assert "embedding.weight" in backbone
    with torch.no_grad():
        base_out, a_out = model(items), model(items, "a")

    train_task(model, "b", items)

    for name, param in model.named_parameters():
        if name in backbone:
            assert torch.equal(param, backbone[name]), name
    with torch.no_grad():
        torch.testing.assert_close(model(items), base_out, rtol=0, atol=0)
        torch.testing.assert_close(model(items, "a"), a_out, rtol=0, atol=0)
        assert not torch.allclose(model(items, "b"), base_out)


def test_unknown_or_duplicate_task_is_refused() -> None:
    model = make_model()
    model.add_task("a", 4)
    with pytest.raises(ValueError):
        model.add_task("a", 4)
    with pytest.raises(KeyError):
        model(random_items(1, L), task="nope")


def reference_keep(rows: list[list[int]], keep: list[bool]) -> list[list[int]]:
    out = []
    for row in rows:
        kept = [i for i in row if i != PAD_ID and keep[i]]
        out.append([PAD_ID] * (len(row) - len(kept)) + kept)
    return out


@settings(max_examples=50, deadline=None)
@given(
    rows=st.integers(1, 4).flatmap(
        lambda n: st.lists(
            st.lists(st.integers(0, 11), min_size=6, max_size=6), min_size=n, max_size=n
        )
    ),
    keep=st.lists(st.booleans(), min_size=12, max_size=12),
)
def test_keep_domains_matches_python_reference(rows: list[list[int]], keep: list[bool]) -> None:
    result = keep_domains(torch.tensor(rows), torch.tensor(keep))
    assert result.tolist() == reference_keep(rows, keep)


def test_keep_domains_exports_to_onnx(tmp_path) -> None:
    ort = pytest.importorskip("onnxruntime")

    class Keep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("keep", torch.arange(V) % 3 == 0)

        def forward(self, items: torch.Tensor) -> torch.Tensor:
            return keep_domains(items, self.keep)

    module = Keep()
    path = tmp_path / "keep.onnx"
    torch.onnx.export(
        module, (random_items(2, L),), str(path), input_names=["items"],
        dynamic_axes={"items": {0: "batch", 1: "length"}}, dynamo=False,
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    items = random_items(3, 11, seed=1)
    items[0, :4] = PAD_ID
    (onnx_out,) = session.run(None, {"items": items.numpy()})
    np.testing.assert_array_equal(onnx_out, module(items).numpy())


def test_item_scoring_head_inner_product_form_equals_forward() -> None:
    torch.manual_seed(0)
    head = ItemScoringHead(D, 10)
    torch.nn.init.normal_(head.item_bias)
    user = torch.randn(3, D)
    torch.testing.assert_close(head.query(user) @ head.item_vectors().T, head(user))
    assert head.query(user).shape == (3, D + 1)
    assert head.item_vectors().shape == (10, D + 1)


def test_next_item_head_partial_scores_match_full_logits() -> None:
    torch.manual_seed(0)
    head = NextItemHead(D, V)
    hidden = torch.randn(5, D)
    ids = torch.tensor([3, 7, 7, 63])
    targets = torch.tensor([2, 3, 4, 5, 6])
    full = head(hidden)
    torch.testing.assert_close(head.score_items(hidden, ids), full[:, ids])
    torch.testing.assert_close(head.score_targets(hidden, targets), full[torch.arange(5), targets])


def test_classification_head_shape() -> None:
    assert ClassificationHead(D, 7)(torch.randn(3, D)).shape == (3, 7)
