"""The task network on a pretrained encoder, and how each method wires and freezes it.

``method`` picks what is trained on top of the pretrained encoder:

* ``adapter``: backbone frozen; bottleneck patches in every residual block, the task's own layer
  norms and the head are trained (PeterRec). Tasks are added one after another to the *same*
  backbone object and never change each other's outputs.
* ``head-only``: backbone frozen, only the head (trained on precomputed user vectors: seconds).
* ``fine-tune-all``: every parameter, starting from a deep copy of the pretrained weights.
* ``scratch``: the same architecture, randomly initialised.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from uservec.training.checkpoint import load_checkpoint, load_encoder
from uservec.training.choices import FROZEN_METHODS, METHODS, Placement, Readout
from uservec.training.model import (
    TASK_KEY,
    BottleneckPatch,
    ItemPatch,
    NextItNet,
    keep_domains,
)
from uservec.training.task_settings import AdaptSettings, Hyperparameters


@dataclass(eq=False)
class Pretrained:
    """The pretrained encoder (the shared backbone) and its next-item output layer."""

    encoder: NextItNet
    #: (V, D) and (V,) next-item output layer: item vectors in the user-vector space
    output_weight: torch.Tensor | None
    output_bias: torch.Tensor | None
    checkpoint: str
    meta: dict[str, Any] = field(default_factory=dict)


def load_pretrained(checkpoint: str | Path) -> Pretrained:
    """Read the encoder and its next-item output layer from a pretraining checkpoint."""
    encoder, meta = load_encoder(checkpoint)
    head_state = load_checkpoint(checkpoint).get("head", {})
    return Pretrained(
        encoder=encoder,
        output_weight=head_state.get("output.weight"),
        output_bias=head_state.get("output.bias"),
        checkpoint=str(checkpoint),
        meta=meta,
    )


class TaskNetwork(nn.Module):
    """Encoder (+ optional patch set and source-domain filter) -> user vector -> task head.

    The encoder may be the shared backbone: this module then only *refers* to it (a frozen
    backbone is never stepped), so several task networks can sit on one backbone object.
    """

    def __init__(
        self,
        encoder: NextItNet,
        head: nn.Module,
        patches: str | None = None,
        keep: torch.Tensor | None = None,
        readout: Readout = "last",
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.patches = patches
        self.readout: Readout = readout
        if keep is not None:
            self.register_buffer("keep", keep.to(torch.bool))
        else:
            self.keep = None

    def user_vector(self, items: torch.Tensor) -> torch.Tensor:
        """items (B, L) left-padded -> (B, D), after dropping non-source events if filtered."""
        if self.keep is not None:
            items = keep_domains(items, self.keep)
        return self.encoder.user_vector(items, task=self.patches, readout=self.readout)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.head(self.user_vector(items))  # (B, C)


def count_parameters(params: Sequence[nn.Parameter]) -> int:
    """Number of scalars in distinct parameters."""
    seen: dict[int, int] = {id(p): p.numel() for p in params}
    return int(sum(seen.values()))


def _task_state_keys(encoder: NextItNet, name: str) -> list[str]:
    """Encoder state-dict keys that belong to task ``name`` (patches, own layer norms, item
    patch)."""
    return [
        key for key in encoder.state_dict()
        if (match := TASK_KEY.match(key)) and match.group(1) == name
    ]


def task_state_dict(encoder: NextItNet, name: str) -> dict[str, torch.Tensor]:
    """The part of the encoder's state dict that task ``name`` trained (for ``final.pt``)."""
    state = encoder.state_dict()
    return {key: state[key].detach().clone() for key in _task_state_keys(encoder, name)}


def add_or_reset_task(
    encoder: NextItNet, name: str, bottleneck: int, placement: Placement, own_layer_norms: bool,
    item_rank: int = 0,
) -> None:
    """Register task ``name`` on the encoder, or re-initialise it (identity patches) if present.

    Re-initialising only touches the task's own modules, so retraining a task leaves every other
    task of the backbone bitwise unchanged.
    """
    if "." in name or not name:
        raise ValueError(f"task name {name!r} must be non-empty and contain no '.'")
    spec = encoder.tasks.get(name)
    if spec is None:
        encoder.add_task(name, bottleneck, placement, own_layer_norms, item_rank)
        return
    if (spec.bottleneck, spec.placement, spec.own_layer_norms, spec.item_rank) != (
        bottleneck, placement, own_layer_norms, item_rank
    ):
        raise ValueError(f"task {name!r} exists with a different spec {spec}")
    for block in encoder.residual_blocks():
        for patch in block.task_patches(name):
            fresh = BottleneckPatch(encoder.dim, bottleneck)
            patch.load_state_dict(fresh.state_dict())
        if name in block.task_norms:
            block.layer_norms(name).load_state_dict(block.norms.state_dict())
    if name in encoder.item_patches:
        fresh_items = ItemPatch(encoder.vocab_size, encoder.dim, item_rank)
        encoder.item_patches[name].load_state_dict(fresh_items.state_dict())


@dataclass(eq=False)
class MethodSetup:
    """A task network ready to train and the parameters that ``method`` trains."""

    network: TaskNetwork
    params: list[nn.Parameter]
    #: trains on precomputed backbone user vectors instead of sequences
    on_features: bool

    def param_groups(self, hp: Hyperparameters, head_lr_scale: float) -> list[dict[str, Any]]:
        """Optimizer groups: the head learns ``head_lr_scale`` times faster than the encoder
        part (a head at the encoder's small learning rate barely leaves the class prior)."""
        head_ids = {id(p) for p in self.network.head.parameters()}
        encoder = [p for p in self.params if id(p) not in head_ids]
        head = [p for p in self.params if id(p) in head_ids]
        groups = [{"params": head, "lr": hp.lr * (head_lr_scale if encoder else 1.0)}]
        return ([{"params": encoder, "lr": hp.lr}] if encoder else []) + groups


def build_method(
    method: str,
    pretrained: NextItNet,
    head: nn.Module,
    hp: Hyperparameters,
    settings: AdaptSettings,
    task_name: str,
    keep: torch.Tensor | None = None,
    seed: int = 0,
    shared: bool = False,
) -> MethodSetup:
    """Wire ``method`` around the pretrained encoder (see the module docstring).

    With ``shared`` the adapter and head-only methods use ``pretrained`` itself (the one backbone
    every exported task reads); otherwise they use a private copy, so evaluation fits leave the
    backbone without stray tasks. fine-tune-all and scratch always own their encoder.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method in FROZEN_METHODS:
        encoder = pretrained if shared else copy.deepcopy(pretrained)
        patches = None
        if method == "adapter":
            if hp.bottleneck is None:
                raise ValueError("the adapter method needs a bottleneck size")
            torch.manual_seed(seed)
            add_or_reset_task(encoder, task_name, hp.bottleneck,
                              hp.placement or settings.placement, settings.own_layer_norms,
                              hp.item_rank)
            patches = task_name
        encoder.freeze_backbone()
        task_params = encoder.task_parameters(task_name) if patches else []
        for param in task_params:
            param.requires_grad_(True)
        network = TaskNetwork(encoder, head, patches, keep, settings.readout)
        params = [*task_params, *head.parameters()]
        return MethodSetup(network, params, on_features=method == "head-only")
    if method == "fine-tune-all":
        encoder = copy.deepcopy(pretrained)
    else:
        torch.manual_seed(seed)
        encoder = NextItNet(pretrained.vocab_size, pretrained.dim, pretrained.dilations,
                            kernel_size=pretrained.kernel_size, dropout=pretrained.dropout.p)
    encoder.requires_grad_(True)
    network = TaskNetwork(encoder, head, None, keep, settings.readout)
    return MethodSetup(network, [*backbone_parameters(encoder), *head.parameters()],
                       on_features=False)


def backbone_parameters(encoder: NextItNet) -> list[nn.Parameter]:
    """The encoder's own parameters, without any task's patches or layer norms."""
    task_ids = {id(p) for name in encoder.tasks for p in encoder.task_parameters(name)}
    return [p for p in encoder.parameters() if id(p) not in task_ids]


