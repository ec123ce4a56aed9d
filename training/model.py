"""NextItNet encoder with per-task model patches (PeterRec) and the heads that sit on top of it.

Modules only: no file I/O, no numpy, no device moves, no losses (those live in ``objectives.py``).
Shapes: B batch, L sequence length, D hidden size, V vocabulary size, b bottleneck size, r rank
of an item patch.

Sequences are left-padded with ``PAD_ID``; the newest event sits at the last position. The encoder
is causal (left padding inside every convolution) and zeroes the hidden state at PAD positions after
the embedding and after every sub-layer, so a real position's output does not depend on how much
left padding precedes the sequence: serving may pad a batch only to its longest member.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from uservec.contract.ids import PAD_ID
from uservec.training.choices import PLACEMENTS, READOUTS, Placement, Readout

#: state-dict keys of a task's own modules; group 1 is the task name (block patches, task layer
#: norms, item patch): the one place that knows the layout, for saving and for export
TASK_KEY = re.compile(r"^(?:blocks\.\d+\.(?:patches|task_norms)|item_patches)\.([^.]+)\.")


@dataclass(frozen=True)
class TaskSpec:
    """How a task's patches are built; recorded so a checkpoint can rebuild the same modules."""

    bottleneck: int
    placement: Placement
    own_layer_norms: bool
    #: rank of the task's item patch (0 = none; see :class:`ItemPatch`)
    item_rank: int = 0


def keep_domains(items: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Drop events whose item is not in ``keep`` and re-compact each row to the right, in order.

    items (B, L) int64 left-padded ids; keep (V,) bool. Loop-free (a sort on a key built from the
    keep mask and the position), so the same code runs in training and in the exported ONNX graph.
    """
    L = items.shape[1]
    kept = keep[items] & (items != PAD_ID)  # (B, L)
    position = torch.arange(L, device=items.device).unsqueeze(0)  # (1, L)
    # dropped events get keys 0..L-1, kept ones L..2L-1: keys are distinct, so any sort is stable
    key = position + kept.to(torch.int64) * L  # (B, L)
    order = torch.argsort(key, dim=1)  # (B, L)
    compacted = torch.gather(items, 1, order)  # (B, L)
    kept_sorted = torch.gather(kept, 1, order)  # (B, L)
    return compacted.masked_fill(~kept_sorted, PAD_ID)


def read_out(hidden: torch.Tensor, items: torch.Tensor, readout: Readout = "last") -> torch.Tensor:
    """hidden (B, L, D), zero at PAD, items (B, L) -> one vector per sequence (B, D).

    ``last``: the state after the newest event, what next-item prediction was trained on; it sees
    only the encoder's receptive field and favours short-term intent. ``mean``: the average over
    every real event of the window, a summary of long-term taste, which is what profile
    attributes depend on. Both ignore left padding, so serving may pad a batch to its longest row.
    """
    if readout == "last":
        return hidden[:, -1, :]
    if readout == "mean":
        count = (items != PAD_ID).sum(dim=1, keepdim=True).clamp(min=1)  # (B, 1)
        return hidden.sum(dim=1) / count.to(hidden.dtype)  # (B, D)
    raise ValueError(f"readout must be one of {READOUTS}, got {readout!r}")


class BottleneckPatch(nn.Module):
    """Linear D->b, ReLU, Linear b->D; returns the delta (the caller adds the residual).

    The up-projection starts at zero, so a freshly added patch leaves the network unchanged.
    """

    def __init__(self, dim: int, bottleneck: int) -> None:
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(F.relu(self.down(x)))  # (B, L, D)


class ItemPatch(nn.Module):
    """A task's low-rank correction of the frozen item embeddings: item -> A[item] @ B.

    A is (V, r), B is (r, D). The block patches can only re-mix the D directions the frozen
    embedding gives each item; a profile attribute may hang on items that next-item pretraining
    placed close together (the labelled TF-IDF baselines weight every item on its own). This
    patch gives a task r new directions per item for ``V * r + r * D`` parameters. B starts at
    zero, so a freshly added patch leaves the network unchanged, like :class:`BottleneckPatch`.
    """

    def __init__(self, vocab_size: int, dim: int, rank: int) -> None:
        super().__init__()
        self.items = nn.Parameter(torch.randn(vocab_size, rank) / rank**0.5)
        self.up = nn.Parameter(torch.zeros(rank, dim))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return F.embedding(items, self.items) @ self.up  # (B, L, D)


class CausalConv(nn.Module):
    """Dilated 1-D convolution over time that only looks left (left padding, none on the right)."""

    def __init__(self, dim: int, kernel_size: int, dilation: int) -> None:
        super().__init__()
        self.left_pad = (kernel_size - 1) * dilation
        self.conv = nn.Conv1d(dim, dim, kernel_size, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.transpose(1, 2)  # (B, D, L)
        h = F.pad(h, (self.left_pad, 0))  # (B, D, pad + L)
        return self.conv(h).transpose(1, 2)  # (B, L, D)


class ResidualBlock(nn.Module):
    """conv(d) -> LN -> ReLU -> conv(2d) -> LN -> ReLU, plus the input (official NextItNet block).

    Task patches and task layer norms are kept in ModuleDicts keyed by task name, so the state dict
    reads ``blocks.3.patches.<task>.0.down.weight`` and a task can be saved or dropped on its own.
    """

    def __init__(self, dim: int, kernel_size: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.dim = dim
        self.convs = nn.ModuleList(
            [CausalConv(dim, kernel_size, dilation), CausalConv(dim, kernel_size, 2 * dilation)]
        )
        self.norms = nn.ModuleList([nn.LayerNorm(dim), nn.LayerNorm(dim)])
        self.dropout = nn.Dropout(dropout)
        self.patches = nn.ModuleDict()
        self.task_norms = nn.ModuleDict()
        self.placements: dict[str, Placement] = {}

    def add_task(self, name: str, spec: TaskSpec) -> None:
        self.patches[name] = nn.ModuleList(
            [BottleneckPatch(self.dim, spec.bottleneck) for _ in self.convs]
        )
        self.placements[name] = spec.placement
        if spec.own_layer_norms:
            copies = nn.ModuleList([nn.LayerNorm(self.dim) for _ in self.norms])
            copies.load_state_dict(self.norms.state_dict())
            self.task_norms[name] = copies

    def task_patches(self, name: str) -> nn.ModuleList:
        """Task ``name``'s patch per convolution."""
        return cast(nn.ModuleList, self.patches[name])

    def layer_norms(self, task: str | None) -> nn.ModuleList:
        """The layer norms ``task`` reads: its own copies if it has them, else the shared ones."""
        if task is not None and task in self.task_norms:
            return cast(nn.ModuleList, self.task_norms[task])
        return self.norms

    def forward(self, x: torch.Tensor, mask: torch.Tensor, task: str | None = None) -> torch.Tensor:
        # x (B, L, D) zero at PAD positions; mask (B, L, 1) float, 1 at real events
        patches = self.task_patches(task) if task is not None else None
        serial = task is not None and self.placements[task] == "serial"
        norms = self.layer_norms(task)
        h = x
        for i, conv in enumerate(self.convs):
            out = conv(h)  # (B, L, D)
            if patches is not None:
                out = out + patches[i](out if serial else h)
            # re-zero PAD positions: LayerNorm of a zero row is its bias, which the next
            # convolution would otherwise read as if it were an event
            h = self.dropout(F.relu(norms[i](out))) * mask
        return (x + h) * mask


class NextItNet(nn.Module):
    """Item embedding + stacked dilated causal residual blocks -> hidden state per position."""

    def __init__(
        self,
        vocab_size: int,
        dim: int,
        dilations: tuple[int, ...] | list[int],
        kernel_size: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dim = dim
        self.dilations = tuple(dilations)
        self.kernel_size = kernel_size
        self.embedding = nn.Embedding(vocab_size, dim, padding_idx=PAD_ID)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            [ResidualBlock(dim, kernel_size, d, dropout) for d in dilations]
        )
        #: per-task item patches, keyed like the block patches (``item_patches.<task>.items``)
        self.item_patches = nn.ModuleDict()
        self.tasks: dict[str, TaskSpec] = {}

    def residual_blocks(self) -> list[ResidualBlock]:
        """The blocks, typed (``nn.ModuleList`` yields plain modules)."""
        return [cast(ResidualBlock, block) for block in self.blocks]

    def forward(self, items: torch.Tensor, task: str | None = None) -> torch.Tensor:
        """items (B, L) left-padded ids -> hidden (B, L, D), zero at PAD positions."""
        if task is not None and task not in self.tasks:
            raise KeyError(f"unknown task {task!r}; added tasks: {sorted(self.tasks)}")
        mask = (items != PAD_ID).unsqueeze(-1).to(self.embedding.weight.dtype)  # (B, L, 1)
        x = self.embedding(items)  # (B, L, D)
        if task is not None and task in self.item_patches:
            x = x + self.item_patches[task](items)
        x = self.dropout(x) * mask
        for block in self.blocks:
            x = block(x, mask, task)
        return x

    def user_vector(
        self, items: torch.Tensor, task: str | None = None, readout: Readout = "last"
    ) -> torch.Tensor:
        """(B, L) -> (B, D): by default the hidden state after the newest event (see read_out)."""
        return read_out(self.forward(items, task), items, readout)

    def add_task(
        self,
        name: str,
        bottleneck: int,
        placement: Placement = "serial",
        own_layer_norms: bool = True,
        item_rank: int = 0,
    ) -> None:
        """Register a task's patches (identity at start) in every block, and its item patch if
        ``item_rank`` > 0."""
        if name in self.tasks:
            raise ValueError(f"task {name!r} already exists")
        if placement not in PLACEMENTS:
            raise ValueError(f"placement must be 'serial' or 'parallel', got {placement!r}")
        if item_rank < 0:
            raise ValueError(f"item_rank must be >= 0, got {item_rank}")
        spec = TaskSpec(bottleneck, placement, own_layer_norms, item_rank)
        for block in self.residual_blocks():
            block.add_task(name, spec)
        if item_rank:
            self.item_patches[name] = ItemPatch(self.vocab_size, self.dim, item_rank)
        self.tasks[name] = spec

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        """The parameters a task trains: its patches and, if it has them, its layer norms and
        its item patch."""
        if name not in self.tasks:
            raise KeyError(f"unknown task {name!r}; added tasks: {sorted(self.tasks)}")
        params: list[nn.Parameter] = []
        if name in self.item_patches:
            params.extend(self.item_patches[name].parameters())
        for block in self.residual_blocks():
            params.extend(block.task_patches(name).parameters())
            if name in block.task_norms:
                params.extend(block.layer_norms(name).parameters())
        return params

    def freeze_backbone(self) -> None:
        """Stop gradients into every parameter that belongs to no task."""
        task_ids = {id(p) for name in self.tasks for p in self.task_parameters(name)}
        for param in self.parameters():
            if id(param) not in task_ids:
                param.requires_grad_(False)


class NextItemHead(nn.Module):
    """Pretraining output layer (own weights): hidden (.., D) -> logits (.., V)."""

    def __init__(self, dim: int, vocab_size: int) -> None:
        super().__init__()
        self.output = nn.Linear(dim, vocab_size)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.output(hidden)  # (.., V)

    def score_items(self, hidden: torch.Tensor, item_ids: torch.Tensor) -> torch.Tensor:
        """hidden (N, D), item_ids (S,) -> logits (N, S) for those items only (sampled softmax)."""
        weight = self.output.weight[item_ids]  # (S, D)
        return hidden @ weight.T + self.output.bias[item_ids]  # (N, S)

    def score_targets(self, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """hidden (N, D), targets (N,) -> (N,) logit of each row's own target."""
        weight = self.output.weight[targets]  # (N, D)
        return (hidden * weight).sum(-1) + self.output.bias[targets]  # (N,)


class ClassificationHead(nn.Module):
    """Dropout + linear layer: user vector (B, D) -> class logits (B, C)."""

    def __init__(self, dim: int, n_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(user))  # (B, C)


class ItemScoringHead(nn.Module):
    """A new target-item table E (N, D) and bias b (N,): score = u @ E.T + b.

    ``query(u) @ item_vectors().T`` gives the same scores, which is the form an inner-product
    index (FAISS) searches: the bias rides along as an extra coordinate against a constant 1.
    """

    def __init__(self, dim: int, n_items: int) -> None:
        super().__init__()
        self.item_embedding = nn.Parameter(torch.randn(n_items, dim) * dim**-0.5)
        self.item_bias = nn.Parameter(torch.zeros(n_items))

    def forward(self, user: torch.Tensor) -> torch.Tensor:
        return user @ self.item_embedding.T + self.item_bias  # (B, N)

    def query(self, user: torch.Tensor) -> torch.Tensor:
        ones = torch.ones_like(user[:, :1])  # (B, 1)
        return torch.cat([user, ones], dim=1)  # (B, D + 1)

    def item_vectors(self) -> torch.Tensor:
        return torch.cat([self.item_embedding, self.item_bias.unsqueeze(1)], dim=1)  # (N, D + 1)
