"""GPU smoke test: a few hundred pretraining steps on a tiny generated dataset; prints events/s,
the final loss, and how far the GPU run's first-epoch loss is from a CPU run of the same steps.

Not part of CI (CI has no GPU). On a machine with one:

    python -m uservec.bench.gpu_smoke              # --device cuda, 2 epochs of ~190 steps
    python -m uservec.bench.gpu_smoke --device cpu # the same on the CPU, for comparison

bf16 autocast makes the GPU losses differ from the CPU's in the third decimal or so; a much
larger gap means something moved to the wrong place.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path
from typing import Any, cast

from uservec.training.batching import NextItemWindows
from uservec.training.config import EvalConfig, ModelConfig, PretrainConfig
from uservec.training.data.prepare import prepare
from uservec.training.data.synthetic import generate_synthetic
from uservec.training.device import DeviceName, resolve_device, supports_bf16
from uservec.training.pretrain import pretrain

MODEL = ModelConfig(dim=64, dilations=(1, 2, 4, 8), max_len=16, dropout=0.0)


def smoke(device: DeviceName, users: int, epochs: int, batch_size: int) -> dict[str, Any]:
    """Pretrain on ``device``; events/s (targets per second of training) and the losses."""
    dataset = prepare(generate_synthetic(users, 400, 2, seed=0), name="gpu-smoke")
    cfg = PretrainConfig(epochs=epochs, batch_size=batch_size, patience=epochs, device=device)
    windows = NextItemWindows(dataset, MODEL.max_len)
    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = pretrain(dataset, MODEL, cfg, EvalConfig(), Path(out), seed=0, resume=False)
        seconds = time.perf_counter() - started
    train_seconds = sum(len(windows) / e["sequences_per_s"] for e in result.history)
    resolved = resolve_device(device)
    return {
        "device": str(resolved), "bf16_autocast": supports_bf16(resolved),
        "steps": epochs * -(-len(windows) // batch_size),
        "events_per_s": round(windows.num_targets() * epochs / train_seconds),
        "losses": [round(e["loss"], 4) for e in result.history],
        "final_loss": round(result.history[-1]["loss"], 4),
        "val_ndcg@10": round(result.val_metrics["ndcg@10"], 4),
        "seconds": round(seconds, 1), "model": dataclasses.asdict(MODEL),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compare-cpu", action="store_true",
                        help="also run one epoch on the CPU and print the loss gap")
    args = parser.parse_args()
    result = smoke(cast(DeviceName, args.device), args.users, args.epochs, args.batch_size)
    if args.compare_cpu:
        cpu = smoke("cpu", args.users, 1, args.batch_size)
        result["cpu_first_epoch_loss"] = cpu["losses"][0]
        result["first_epoch_loss_gap"] = round(abs(cpu["losses"][0] - result["losses"][0]), 4)
    print(json.dumps(result, indent=2))  # noqa: T201 (a script: its output is the result)


if __name__ == "__main__":
    main()
