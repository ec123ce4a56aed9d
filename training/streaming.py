"""The fused model one event at a time: (state, new event) -> (new state, every output).

A dilated causal convolution with kernel k and dilation d reads its input at t, t-d, ..., t-(k-1)d.
Like fast WaveNet generation, each convolution therefore keeps the last ``(k-1)*d`` inputs it saw,
and one new event costs one position per layer instead of re-encoding the whole window.
:class:`StreamingUserModel` mirrors :class:`~uservec.training.fused.FusedUserModel` pass for pass
(backbone, every adapter patch set, every source-domain filter) and keeps, per pass:

* per residual block and convolution, the buffer of its last ``(k-1)*d`` inputs (oldest first);
* ``last``: the pass's newest hidden state (the ``last`` readout);
* ``sum`` and ``count``: the sum of every hidden state and how many there were (``mean`` readout).

The whole state is one flat float32 row per user (:attr:`StreamingUserModel.state_size` wide), so a
store keeps it as one value. A zero row is the empty history: the encoder zeroes every PAD position,
so a zero buffer is what left padding feeds each convolution.

Window semantics (docs/service.md#the-window): up to ``max_len`` events, streaming equals encoding
the whole sequence. Beyond it, the ``last`` readout still equals re-encoding the latest ``max_len``
events whenever the receptive field is at most ``max_len``, since the newest position reads no
older input; the ``mean`` readout averages every event since the state began (re-encoding averages
only the latest ``max_len``). A filtered pass (a cross-domain head) steps only on events its
source domains keep, so its window counts kept events, not all events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from uservec.contract.ids import PAD_ID
from uservec.training.fused import FusedUserModel, PassKey, VectorKey
from uservec.training.model import CausalConv, NextItNet, ResidualBlock

STATE_INPUT, ITEM_INPUT, STATE_OUTPUT = "state", "item", "next_state"


@dataclass(frozen=True)
class Slot:
    """Where one piece of the flat state lives: columns ``[start, start + rows * dim)``."""

    start: int
    rows: int
    dim: int

    @property
    def stop(self) -> int:
        return self.start + self.rows * self.dim


def receptive_field(encoder: NextItNet) -> int:
    """How many of the latest events the newest position reads (1 = only itself)."""
    k = encoder.kernel_size
    return 1 + sum((k - 1) * (d + 2 * d) for d in encoder.dilations)


def _conv_step(conv: nn.Conv1d, window: torch.Tensor, dilation: int) -> torch.Tensor:
    """window (B, (k-1)*d + 1, D) of the conv's inputs, oldest first -> output at the newest."""
    taps = window[:, ::dilation, :].flatten(1)  # (B, k * D): the positions the kernel reads
    weight = conv.weight.permute(2, 1, 0).flatten(0, 1)  # (k * D, D)
    out: torch.Tensor = taps @ weight  # (B, D)
    return out if conv.bias is None else out + conv.bias


class StreamingUserModel(nn.Module):
    """Step form of a :class:`FusedUserModel`: same weights, same outputs, one event per call."""

    def __init__(self, fused: FusedUserModel) -> None:
        super().__init__()
        self.fused = fused.eval()
        self.encoder = cast(NextItNet, fused.encoder)
        self.passes: list[PassKey] = list(fused.passes)
        self.slots: dict[tuple[PassKey, str], Slot] = {}
        width, dim = 0, self.encoder.dim
        for key in self.passes:
            for b, block in enumerate(self.encoder.residual_blocks()):
                for c, conv in enumerate(block.convs):
                    rows = int(cast(CausalConv, conv).left_pad)
                    self.slots[(key, f"buffer.{b}.{c}")] = Slot(width, rows, dim)
                    width += rows * dim
            for name, rows in (("last", 1), ("sum", 1)):
                self.slots[(key, name)] = Slot(width, rows, dim)
                width += dim
            self.slots[(key, "count")] = Slot(width, 1, 1)
            width += 1
        self.state_size = width

    @property
    def output_names(self) -> list[str]:
        """Names of :meth:`forward`'s outputs after the new state, in the fused model's order."""
        return self.fused.output_names

    def empty_state(self, batch: int = 1) -> torch.Tensor:
        """(B, S) zeros: the state of an empty history."""
        return torch.zeros(batch, self.state_size)

    def _get(self, state: torch.Tensor, key: PassKey, name: str) -> torch.Tensor:
        """A slot as (B, rows, dim)."""
        return self._cols(state, key, name).reshape(-1, *self._shape(key, name))

    def _shape(self, key: PassKey, name: str) -> tuple[int, int]:
        slot = self.slots[(key, name)]
        return slot.rows, slot.dim

    def _cols(self, state: torch.Tensor, key: PassKey, name: str) -> torch.Tensor:
        """A slot as (B, rows * dim), the state's own columns."""
        slot = self.slots[(key, name)]
        return state[:, slot.start : slot.stop]

    def _block_step(
        self, block: ResidualBlock, b: int, x: torch.Tensor, state: torch.Tensor, key: PassKey,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One residual block at the newest position: x (B, D) -> (B, D), and its new buffers."""
        task = key[1]
        patches = block.task_patches(task) if task is not None else None
        serial = task is not None and block.placements[task] == "serial"
        norms = block.layer_norms(task)
        h, buffers = x, []
        for c, module in enumerate(block.convs):
            conv = cast(CausalConv, module).conv
            dilation = int(conv.dilation[0])
            window = torch.cat([self._get(state, key, f"buffer.{b}.{c}"), h.unsqueeze(1)], dim=1)
            buffers.append(window[:, 1:, :])  # (B, (k-1)*d, D)
            out = _conv_step(conv, window, dilation)
            if patches is not None:
                out = out + patches[c](out if serial else h)
            h = F.relu(norms[c](out))
        return x + h, buffers

    def _pass_step(
        self, key: PassKey, items: torch.Tensor, state: torch.Tensor
    ) -> torch.Tensor:
        """The pass's new columns of the state; unchanged rows where it skips the event.

        One ``where`` over the pass's whole column range, not one per slot: at one event per
        call the step's cost is the number of graph nodes, not the arithmetic.
        """
        source, task = key
        kept = items != PAD_ID  # (B,)
        if source >= 0:
            kept = kept & getattr(self.fused, f"keep_{source}")[items]
        x = self.encoder.embedding(items)  # (B, D)
        if task is not None and task in self.encoder.item_patches:
            x = x + self.encoder.item_patches[task](items)
        pieces: list[torch.Tensor] = []
        for b, block in enumerate(self.encoder.residual_blocks()):
            x, buffers = self._block_step(block, b, x, state, key)
            pieces.extend(buffer.flatten(1) for buffer in buffers)
        count = self._cols(state, key, "count")  # (B, 1)
        pieces += [x, self._cols(state, key, "sum") + x, count + 1]
        mine = [slot for (k, _), slot in self.slots.items() if k == key]
        old = state[:, mine[0].start : mine[-1].stop]  # (B, pass width)
        return torch.where(kept.unsqueeze(1), torch.cat(pieces, dim=1), old)

    def read(self, state: torch.Tensor, key: VectorKey) -> torch.Tensor:
        """The user vector a head reads from ``state`` (B, S) -> (B, D)."""
        source, task, readout = key
        if readout == "last":
            return self._cols(state, (source, task), "last")
        total = self._cols(state, (source, task), "sum")
        count = self._cols(state, (source, task), "count")
        return total / count.clamp(min=1)

    def forward(self, state: torch.Tensor, items: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """state (B, S), items (B,) one new event per user -> (new state (B, S), *outputs).

        An item equal to ``PAD_ID`` is no event: that row's state is returned unchanged.
        """
        pieces: list[torch.Tensor] = []
        for key in self.passes:
            pieces.append(self._pass_step(key, items, state))
        new_state = torch.cat(pieces, dim=1)  # (B, S)
        return (new_state, *self.outputs(new_state))

    def outputs(self, state: torch.Tensor) -> list[torch.Tensor]:
        """Every fused output from a state, in :attr:`output_names` order."""
        fused = self.fused
        outputs = [self.read(state, fused.backbone_vector)]
        for name, head in fused.profile_heads.items():
            outputs.append(head(self.read(state, fused.profile_vector(name))))
        for name in fused.recommend_heads:
            query = fused.scoring_head(name).query
            outputs.append(query(self.read(state, fused.recommend_vector(name))))
        return outputs

    def stream(self, sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, ...]:
        """Step every sequence event by event from the empty state (reference and tests)."""
        length = max((len(s) for s in sequences), default=0)
        rows = [[PAD_ID] * (length - len(s)) + list(s) for s in sequences]
        items = torch.tensor(rows, dtype=torch.int64).reshape(len(sequences), length)
        state = self.empty_state(len(sequences))
        with torch.no_grad():
            for t in range(length):
                state = self.forward(state, items[:, t])[0]
            return (state, *self.outputs(state))
