"""Data-parallel pretraining on ``torch.distributed``: one process per device, same model on all.

Started by ``uservec run CONFIG --nproc N`` or by ``torchrun`` (which sets ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``); the process group uses gloo on
the CPU and NCCL on CUDA. Every rank builds the same model from the same seed and takes its own
slice of every global batch (``rows[rank::world]``, so N processes train on the batches one
process would); after each backward the gradients are all-reduced, weighted by each rank's share
of the batch's targets, so the update is the one-process update of the same global batch (the
loss is a mean over targets). Every rank then takes the same optimizer step and the replicas
stay identical; what torch's ``DistributedDataParallel`` does, without wrapping the modules (the
pretraining loss reads two of them). Only rank 0 writes checkpoints, reports and logs.

    torchrun --nproc-per-node 2 -m uservec.cli run configs/tiny.toml   # = uservec run --nproc 2
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

logger = logging.getLogger(__name__)

#: how long a rank waits for the others (a rank preparing a large dataset holds the rest)
TIMEOUT = timedelta(hours=2)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel ranks (rank 0 of 1 when not distributed)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes files and logs progress."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_world() -> World:
    """The ranks torchrun (or ``--nproc``) described in the environment; one rank otherwise."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    return World(int(os.environ.get("RANK", "0")), size, int(os.environ.get("LOCAL_RANK", "0")))


def current_world() -> World:
    """The world of the initialised process group (one rank when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return World()
    return World(dist.get_rank(), dist.get_world_size(), launched_world().local_rank)


def init_world(device: torch.device) -> World:
    """Join the process group torchrun described (no-op for a single process).

    gloo on the CPU, NCCL on CUDA (each rank on GPU ``LOCAL_RANK``).
    """
    world = launched_world()
    if not world.distributed or dist.is_initialized():
        return current_world() if world.distributed else world
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(backend, timeout=TIMEOUT)
    logger.info("rank %d of %d joined (%s)", world.rank, world.size, backend)
    return world


def close_world() -> None:
    """Leave the process group (after the last collective)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(device: torch.device, world: World) -> torch.device:
    """The device of this rank: its own GPU under CUDA, else the CPU."""
    return torch.device("cuda", world.local_rank) if device.type == "cuda" else device


def shard(rows: torch.Tensor, world: World) -> torch.Tensor:
    """This rank's rows of one global batch (all of them for a single process)."""
    return rows if not world.distributed else rows[world.rank :: world.size]


def barrier(world: World) -> None:
    """Wait for every rank (no-op for a single process)."""
    if world.distributed:
        dist.barrier()


def sync_gradients(params: Iterable[nn.Parameter], weight: float, world: World) -> None:
    """Replace each gradient by the ``weight``-weighted mean of the ranks' gradients.

    One all-reduce of one flat vector per step: [w * grad..., w]. With ``weight`` = the rank's
    targets in the batch and per-rank mean losses, the result is the gradient of the global mean.
    """
    if not world.distributed:
        return
    params = [p for p in params if p.grad is not None]
    if not params:
        return
    device = params[0].grad.device  # type: ignore[union-attr]
    flat = torch.cat([p.grad.reshape(-1) * weight for p in params]  # type: ignore[union-attr]
                     + [torch.tensor([float(weight)], device=device)])
    dist.all_reduce(flat)
    total = flat[-1].clamp_min(1e-12)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_((flat[offset : offset + n] / total).view_as(p))  # type: ignore[union-attr]
        offset += n


def all_sum(values: list[float], world: World) -> list[float]:
    """The sum over ranks of each value (the values themselves for a single process)."""
    if not world.distributed:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return [float(v) for v in tensor.cpu()]
