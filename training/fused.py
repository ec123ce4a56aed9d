"""The fused multi-task model: one forward over ``items`` serves the user vector and every head.

This is the module that gets exported to ONNX (``export/onnx_export.py``). The service calls the
graph once per request batch and reads every head from that one call, so the graph must hold every
head, and work that several heads need is done once:

* one backbone pass (``task=None``) gives ``user_vector`` and feeds every head-only task;
* one pass per distinct (input, patch set) pair feeds the adapter tasks (a patch set changes the
  weights inside the residual blocks, so it needs its own pass); tasks that read the same pass
  with different readouts (last position, mean over events) share it;
* one ``keep_domains`` compaction per distinct source-domain table feeds the cross-domain tasks.

Outputs, in this fixed order (also :attr:`FusedUserModel.output_names`)::

    user_vector          (B, D)       backbone user vector
    profile.<name>       (B, C)       per profile task, in ``profile_heads`` order: class logits
    query.<name>         (B, D')      per recommendation task, in ``recommend_heads`` order:
                                      query vector; scores = query @ item_vectors.T
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, cast

import torch
from torch import nn

USER_VECTOR = "user_vector"
PROFILE_PREFIX = "profile."
QUERY_PREFIX = "query."

#: ``(input, patch set)``: input -1 is the raw sequence, i >= 0 the i-th keep table's compaction.
PassKey = tuple[int, str | None]
#: a pass plus how its hidden states are read out into one vector
VectorKey = tuple[int, str | None, str]
_RAW = -1


class ScoringHead(Protocol):
    """What a recommendation head offers besides its scores (training.model.ItemScoringHead)."""

    def query(self, user: torch.Tensor) -> torch.Tensor: ...

    def item_vectors(self) -> torch.Tensor: ...


@dataclass(frozen=True, eq=False)
class ProfileTask:
    """A profile head, the encoder patch set it reads (None = head-only) and its readout."""

    head: nn.Module
    patches: str | None = None
    readout: str = "last"
    #: a wide part reading the ``bag`` input (training.wide.modules); None = the head alone
    wide: nn.Module | None = None
    #: "deep": the head's logits; "wide": the wide part's; "wide+deep": their sum
    served_kind: str = "deep"


@dataclass(frozen=True, eq=False)
class RecommendTask:
    """A recommendation head, its patch set, and which item ids its input keeps.

    ``source_keep`` is a ``(V,)`` bool table (True = the event is kept): a cross-domain head reads
    only its source-domain events. None keeps every event.
    """

    head: nn.Module
    patches: str | None = None
    source_keep: torch.Tensor | None = None
    readout: str = "last"
    #: a wide part reading the ``bag`` input (training.wide.modules); None = the head alone
    wide: nn.Module | None = None
    #: "deep", "wide" or "wide+deep": which query coordinates count (the others are zeroed)
    served_kind: str = "deep"


def profile_output(name: str) -> str:
    """Graph output name of a profile task's logits."""
    return f"{PROFILE_PREFIX}{name}"


def query_output(name: str) -> str:
    """Graph output name of a recommendation task's query vector."""
    return f"{QUERY_PREFIX}{name}"


def _default_keep_domains() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    from uservec.training.model import (
        keep_domains,  # the encoder's own compaction, exported with it
    )

    return keep_domains


class FusedUserModel(nn.Module):
    """Encoder + every task head behind a single ``forward(items)`` (see the module docstring)."""

    def __init__(
        self,
        encoder: nn.Module,
        profile_heads: Mapping[str, ProfileTask],
        recommend_heads: Mapping[str, RecommendTask],
        keep_domains: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        overlap = set(profile_heads) & set(recommend_heads)
        if overlap:
            raise ValueError(f"task names used by both a profile and a recommend head: {overlap}")
        self.encoder = encoder
        self.profile_heads = nn.ModuleDict({n: t.head for n, t in profile_heads.items()})
        self.recommend_heads = nn.ModuleDict({n: t.head for n, t in recommend_heads.items()})
        tasks: dict[str, ProfileTask | RecommendTask] = {**profile_heads, **recommend_heads}
        self.wide_parts = nn.ModuleDict({n: t.wide for n, t in tasks.items()
                                         if t.wide is not None})
        self.served_kinds = {n: t.served_kind if t.wide is not None else "deep"
                             for n, t in tasks.items()}
        self._keep_domains = keep_domains if keep_domains is not None else _default_keep_domains()
        self._num_keep = 0
        keep_index: dict[str, int] = {}
        for name, task in recommend_heads.items():
            keep_index[name] = self._register_keep(task.source_keep)
        self._profile_vector: dict[str, VectorKey] = {
            n: (_RAW, t.patches, t.readout) for n, t in profile_heads.items()
        }
        self._recommend_vector: dict[str, VectorKey] = {
            n: (keep_index[n], t.patches, t.readout) for n, t in recommend_heads.items()
        }
        passes: list[PassKey] = [(_RAW, None)]
        for source, patches, _ in [*self._profile_vector.values(),
                                   *self._recommend_vector.values()]:
            if (source, patches) not in passes:
                passes.append((source, patches))
        self._passes = passes

    def _register_keep(self, table: torch.Tensor | None) -> int:
        """Index of ``table`` among the registered keep tables (equal tables share one buffer)."""
        if table is None:
            return _RAW
        table = torch.as_tensor(table, dtype=torch.bool).reshape(-1)
        for index in range(self._num_keep):
            if torch.equal(getattr(self, f"keep_{index}"), table):
                return index
        self.register_buffer(f"keep_{self._num_keep}", table.clone())
        self._num_keep += 1
        return self._num_keep - 1

    @property
    def output_names(self) -> list[str]:
        """Names of :meth:`forward`'s outputs, in order."""
        return [
            USER_VECTOR,
            *(profile_output(n) for n in self.profile_heads),
            *(query_output(n) for n in self.recommend_heads),
        ]

    @property
    def num_encoder_passes(self) -> int:
        """Encoder passes one forward makes: one per distinct (input, patch set) pair."""
        return len(self._passes)

    @property
    def passes(self) -> tuple[PassKey, ...]:
        """The distinct encoder passes, backbone first (the streaming model mirrors them)."""
        return tuple(self._passes)

    @property
    def backbone_vector(self) -> VectorKey:
        """Where ``user_vector`` comes from: the backbone pass, last readout."""
        return (_RAW, None, "last")

    def profile_vector(self, name: str) -> VectorKey:
        """The pass and readout profile head ``name`` reads."""
        return self._profile_vector[name]

    def recommend_vector(self, name: str) -> VectorKey:
        """The pass and readout recommendation head ``name`` reads."""
        return self._recommend_vector[name]

    def scoring_head(self, name: str) -> ScoringHead:
        """Recommendation head ``name`` with its query and item-vector methods, typed."""
        return self._scoring_head(name)

    @property
    def needs_bag(self) -> bool:
        """True when a task has a wide part: the graph then takes the ``bag`` input too."""
        return len(self.wide_parts) > 0

    def item_vectors(self, name: str) -> torch.Tensor:
        """``(N, D')`` item vectors of a recommendation head, row i = the head's item i.

        With a wide part they are the head's vectors followed by the wide part's (the query
        is laid out the same way), so one inner product scores deep + wide.
        """
        vectors = self._scoring_head(name).item_vectors()
        if name in self.wide_parts:
            wide = self.wide_parts[name].item_vectors()  # type: ignore[operator]
            vectors = torch.cat([vectors, wide], dim=1)
        return vectors

    def _scoring_head(self, name: str) -> ScoringHead:
        return cast(ScoringHead, self.recommend_heads[name])

    def forward(self, items: torch.Tensor,
                bag: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        from uservec.training.model import read_out

        if self.needs_bag and bag is None:
            raise ValueError("this model has wide parts: pass the (B, V) item bag too")

        inputs: dict[int, torch.Tensor] = {_RAW: items}  # (B, L) int64 each
        hidden: dict[PassKey, torch.Tensor] = {}
        for source, patches in self._passes:
            if source not in inputs:
                keep = getattr(self, f"keep_{source}")
                inputs[source] = self._keep_domains(items, keep)
            hidden[(source, patches)] = self.encoder(inputs[source], task=patches)  # (B, L, D)

        def vector(key: VectorKey) -> torch.Tensor:
            source, patches, readout = key
            return read_out(hidden[(source, patches)], inputs[source], readout)  # type: ignore[arg-type]

        outputs = [vector((_RAW, None, "last"))]  # (B, D)
        for name, head in self.profile_heads.items():
            logits = head(vector(self._profile_vector[name]))  # (B, C)
            outputs.append(self._with_wide(name, logits, bag, add=True))
        for name in self.recommend_heads:
            query = self._scoring_head(name).query(vector(self._recommend_vector[name]))
            outputs.append(self._with_wide(name, query, bag, add=False))  # (B, D')
        return tuple(outputs)

    def _with_wide(self, name: str, deep: torch.Tensor, bag: torch.Tensor | None,
                   add: bool) -> torch.Tensor:
        """The served output: deep alone, or combined with the wide part (added or appended)."""
        if name not in self.wide_parts or bag is None:
            return deep
        wide = self.wide_parts[name](bag)
        if self.served_kinds[name] == "wide":
            deep = deep * 0.0
        return deep + wide if add else torch.cat([deep, wide], dim=1)
