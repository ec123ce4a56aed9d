"""The exported model of a task: one typed artefact, written and read in one place."""

from __future__ import annotations

import pytest
import torch

from uservec.training.model import TaskSpec
from uservec.training.task_artifact import (
    ArtifactError,
    ProfileOutputs,
    RecommendOutputs,
    TaskArtifact,
)
from uservec.training.task_settings import Hyperparameters


def artifact(outputs: ProfileOutputs | RecommendOutputs, keep: torch.Tensor | None = None
             ) -> TaskArtifact:
    return TaskArtifact(
        task="t", method="adapter", spec=TaskSpec(4, "serial", True, 0),
        patch_state={"blocks.0.patches.t.0.up.weight": torch.zeros(16, 4)},
        head_state={"linear.weight": torch.ones(2, 16)}, readout="mean",
        hyperparameters=Hyperparameters(lr=1e-3, bottleneck=4, placement="serial", epochs=3),
        trainable_parameters=99, encoder_checkpoint="pretrain/best.pt", encoder_fingerprint="f",
        code_version="0.1.0", max_len=8, outputs=outputs, source_keep=keep,
    )


PROFILE = ProfileOutputs("gender", None, ("F", "M"), (0.4, 0.6), 1.0)
RECOMMEND = RecommendOutputs("books", ("books::1", "books::2"), torch.tensor([5, 6]),
                             torch.tensor([3, 1]), torch.tensor([0, 1]))


@pytest.mark.parametrize("outputs", [PROFILE, RECOMMEND], ids=["profile", "recommend"])
def test_an_artifact_survives_the_file(tmp_path, outputs):
    keep = None if isinstance(outputs, ProfileOutputs) else torch.tensor([False, True, True])
    saved = artifact(outputs, keep)
    loaded = TaskArtifact.load(saved.save(tmp_path / "final.pt"))
    assert loaded.kind == saved.kind and loaded.hyperparameters == saved.hyperparameters
    assert loaded.spec == saved.spec and loaded.readout == "mean" and loaded.max_len == 8
    assert torch.equal(loaded.head_state["linear.weight"], saved.head_state["linear.weight"])
    if isinstance(outputs, ProfileOutputs):
        assert loaded.outputs == PROFILE and loaded.source_keep is None
    else:
        assert isinstance(loaded.outputs, RecommendOutputs)
        assert loaded.outputs.candidate_keys == RECOMMEND.candidate_keys
        assert torch.equal(loaded.outputs.popularity_ranking, RECOMMEND.popularity_ranking)
        assert torch.equal(loaded.source_keep, keep)
    # the payload keeps the flat layout of older runs' final.pt
    payload = saved.to_payload()
    assert payload["kind"] == outputs.kind and payload["hyperparameters"]["lr"] == 1e-3


def test_a_final_model_of_an_older_run_still_reads():
    """Runs made before readouts and class priors existed: "last" and no prior."""
    payload = artifact(PROFILE).to_payload()
    for key in ("readout", "class_prior", "prior_power", "encoder_fingerprint"):
        del payload[key]
    old = TaskArtifact.from_payload(payload)
    assert old.readout == "last" and isinstance(old.outputs, ProfileOutputs)
    assert old.outputs.class_prior is None and old.encoder_fingerprint == ""


@pytest.mark.parametrize(("change", "message"), [
    ({"kind": "ranking"}, r"kind 'ranking' is not one of"),
    ({"method": "lora"}, r"method 'lora' is not one of"),
    ({"labels": None}, r"unreadable task model"),
])
def test_a_damaged_final_model_is_named(change, message):
    with pytest.raises(ArtifactError, match=message):
        TaskArtifact.from_payload({**artifact(PROFILE).to_payload(), **change}, "x/final.pt")
    payload = artifact(PROFILE).to_payload()
    del payload["head_state"]
    with pytest.raises(ArtifactError, match=r"x/final\.pt: no 'head_state'"):
        TaskArtifact.from_payload(payload, "x/final.pt")
