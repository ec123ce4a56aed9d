"""Where training runs: ``pretrain.device`` (``auto`` | ``cpu`` | ``cuda``) and mixed precision.

Models stay device-free (no ``.to`` inside a module); the training loops move modules and batches
here. ``auto`` is CUDA when torch sees a GPU, else the CPU. On CUDA the forward passes run under
bf16 autocast where the GPU supports bf16 (Ampere and later), the weights and the optimizer stay
fp32; on the CPU nothing changes, so CPU results are bitwise those of a device-unaware run.
Checkpoints are read onto the CPU (``checkpoint.load_checkpoint``), so they load on any machine.

Task training (``task_loop``) runs on the device only inside :func:`on_device`: the module is
moved there for the fit and back to the CPU afterwards, so everything that reads a fitted
network (evaluation, export, fused graphs) keeps working with CPU tensors.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from contextvars import ContextVar

import torch
from torch import nn

from uservec.training.choices import DeviceName

__all__ = ["DeviceName", "active_device", "autocast", "on_device", "resolve_device",
           "supports_bf16", "task_device", "to_active", "to_cpu", "using_device"]

logger = logging.getLogger(__name__)

CPU = torch.device("cpu")

_active: ContextVar[torch.device] = ContextVar("uservec_device", default=CPU)


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda") if torch.cuda.is_available() else CPU
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' asked for, but torch sees no CUDA GPU "
                         "(use --device auto or cpu)")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def supports_bf16(device: torch.device) -> bool:
    """bf16 autocast is used on CUDA GPUs that support it, never on the CPU (results unchanged)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def autocast(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """bf16 autocast on a supporting GPU; a no-op elsewhere."""
    if supports_bf16(device):
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def active_device() -> torch.device:
    """The device task training runs on now (the CPU outside :func:`on_device`)."""
    return _active.get()


@contextlib.contextmanager
def on_device(module: nn.Module, device: torch.device) -> Iterator[None]:
    """Move ``module`` to ``device`` for the block, then back to the CPU."""
    if device == CPU:
        yield
        return
    token = _active.set(device)
    module.to(device)
    try:
        yield
    finally:
        module.to(CPU)
        _active.reset(token)


@contextlib.contextmanager
def using_device(device: torch.device) -> Iterator[None]:
    """Task fits inside the block train on ``device`` (``train_loop`` reads it)."""
    token = _task_device.set(device)
    try:
        yield
    finally:
        _task_device.reset(token)


_task_device: ContextVar[torch.device] = ContextVar("uservec_task_device", default=CPU)


def task_device() -> torch.device:
    """The device the next task fit trains on (set by :func:`using_device`)."""
    return _task_device.get()


def to_active(batch: torch.Tensor) -> torch.Tensor:
    """A batch on the active device (the same tensor on the CPU)."""
    return batch.to(active_device(), non_blocking=True)


def to_cpu(outputs: torch.Tensor) -> torch.Tensor:
    """Outputs back on the CPU in fp32 (the same tensor on the CPU); autograd follows the move."""
    if outputs.device == CPU:
        return outputs
    return outputs.to(CPU, torch.float32)
