import numpy as np
import pytest
import torch

from uservec.contract.ids import PAD_ID
from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
from uservec.training.model import ClassificationHead, ItemScoringHead, NextItNet, keep_domains

torch.set_num_threads(1)
DIM, VOCAB, L = 16, 64, 8


def _model(n_head_only: int = 0) -> FusedUserModel:
    torch.manual_seed(0)
    encoder = NextItNet(VOCAB, DIM, (1, 2), 3)
    encoder.add_task("adapted", bottleneck=4)
    keep = torch.arange(VOCAB) % 2 == 1
    profile = {"adapted": ProfileTask(ClassificationHead(DIM, 3), patches="adapted")}
    profile |= {f"plain{i}": ProfileTask(ClassificationHead(DIM, 2)) for i in range(n_head_only)}
    fused = FusedUserModel(
        encoder,
        profile,
        {
            "cross": RecommendTask(ItemScoringHead(DIM, 20), patches="adapted", source_keep=keep),
            "cross_plain": RecommendTask(ItemScoringHead(DIM, 5), source_keep=keep.clone()),
            "all": RecommendTask(ItemScoringHead(DIM, 7)),
        },
    )
    with torch.no_grad():
        for param in fused.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return fused.eval()


def _items(batch: int = 6) -> torch.Tensor:
    items = torch.randint(2, VOCAB, (batch, L), generator=torch.Generator().manual_seed(1))
    items[0, :5] = PAD_ID
    return items


def test_outputs_come_in_the_documented_order_with_their_widths():
    fused = _model(n_head_only=1)
    assert fused.output_names == [
        "user_vector",
        "profile.adapted",
        "profile.plain0",
        "query.cross",
        "query.cross_plain",
        "query.all",
    ]
    with torch.no_grad():
        widths = [out.shape for out in fused(_items())]
    assert widths == [(6, DIM), (6, 3), (6, 2), (6, DIM + 1), (6, DIM + 1), (6, DIM + 1)]


def test_each_head_equals_running_its_task_alone():
    fused = _model(n_head_only=1)
    items = _items()
    encoder, keep = fused.encoder, fused.keep_0
    with torch.no_grad():
        out = dict(zip(fused.output_names, fused(items), strict=True))
        compacted = keep_domains(items, keep)
        expected = {
            "user_vector": encoder.user_vector(items),
            "profile.adapted": fused.profile_heads["adapted"](
                encoder.user_vector(items, "adapted")
            ),
            "profile.plain0": fused.profile_heads["plain0"](encoder.user_vector(items)),
            "query.cross": fused.recommend_heads["cross"].query(
                encoder.user_vector(compacted, "adapted")
            ),
            "query.cross_plain": fused.recommend_heads["cross_plain"].query(
                encoder.user_vector(compacted)
            ),
            "query.all": fused.recommend_heads["all"].query(encoder.user_vector(items)),
        }
    for name, value in expected.items():
        torch.testing.assert_close(out[name], value, msg=name)


@pytest.mark.parametrize("n_head_only", [0, 1, 5])
def test_one_encoder_pass_per_distinct_input_and_patch_set(n_head_only):
    fused = _model(n_head_only)
    calls: list[str | None] = []
    original = fused.encoder.forward

    def counting(items, task=None):
        calls.append(task)
        return original(items, task)

    fused.encoder.forward = counting
    with torch.no_grad():
        fused(_items())
    # raw/backbone (user vector, head-only profiles, "all"), raw/adapted, kept/adapted and
    # kept/backbone: head-only tasks add heads, never passes
    assert len(calls) == fused.num_encoder_passes == 4


def test_equal_keep_tables_share_one_buffer():
    fused = _model()
    assert [name for name, _ in fused.named_buffers()] == ["keep_0"]


def test_a_name_used_by_both_kinds_is_refused():
    encoder = NextItNet(VOCAB, DIM, (1,), 3)
    with pytest.raises(ValueError, match="both"):
        FusedUserModel(
            encoder,
            {"x": ProfileTask(ClassificationHead(DIM, 2))},
            {"x": RecommendTask(ItemScoringHead(DIM, 3))},
        )


def test_item_vectors_score_like_the_head():
    fused = _model()
    with torch.no_grad():
        user = fused.encoder.user_vector(_items())
        head = fused.recommend_heads["all"]
        scores = head.query(user) @ fused.item_vectors("all").T
        np.testing.assert_allclose(scores.numpy(), head(user).numpy(), atol=1e-5)


def test_mean_readout_heads_share_their_pass_and_read_the_mean():
    torch.manual_seed(0)
    encoder = NextItNet(VOCAB, DIM, (1, 2), 3)
    encoder.add_task("adapted", bottleneck=4)
    fused = FusedUserModel(encoder, {
        "last": ProfileTask(ClassificationHead(DIM, 2), patches="adapted"),
        "mean": ProfileTask(ClassificationHead(DIM, 2), patches="adapted", readout="mean"),
    }, {"all_mean": RecommendTask(ItemScoringHead(DIM, 7), readout="mean")}).eval()
    assert fused.num_encoder_passes == 2  # backbone + adapted: a readout never adds a pass
    items = _items()
    with torch.no_grad():
        out = dict(zip(fused.output_names, fused(items), strict=True))
        mean = fused.profile_heads["mean"](encoder.user_vector(items, "adapted", "mean"))
        query = fused.recommend_heads["all_mean"].query(encoder.user_vector(items, None, "mean"))
    torch.testing.assert_close(out["profile.mean"], mean)
    torch.testing.assert_close(out["query.all_mean"], query)
