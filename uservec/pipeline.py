"""The whole job, stage after stage: train (prepare -> pretrain -> tasks) -> export -> report.

This module sits above every stage so that no stage imports a later one: training writes a run
folder, export reads only that folder, and this is the one place that calls both in order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from uservec.training import memory
from uservec.training.config import ExperimentConfig
from uservec.training.device import resolve_device
from uservec.training.distributed import close_world, init_world
from uservec.training.run_dir import RunDir
from uservec.training.runner import finish_report, pretrain_rank, run_training

log = logging.getLogger(__name__)


def run_experiment(cfg: ExperimentConfig, out_dir: Path, resume: bool = True) -> dict[str, Any]:
    """Run every stage the config declares and write the report; returns the report dict.

    Under torchrun (``uservec run --nproc N``) every rank pretrains; rank 0 alone prepares the
    data, fits the tasks, exports and reports, and the other ranks return an empty dict.
    """
    world = init_world(resolve_device(cfg.pretrain.device))
    try:
        if not world.is_main:
            logging.getLogger("uservec").setLevel(logging.WARNING)  # rank 0 tells the story
            pretrain_rank(cfg, out_dir, resume, world)
            return {}
        return _run_main(cfg, out_dir, resume)
    finally:
        close_world()


def _run_main(cfg: ExperimentConfig, out_dir: Path, resume: bool) -> dict[str, Any]:
    export = cfg.export  # checked when the config loaded, not after hours of training
    run = run_training(cfg, out_dir, resume=resume)
    if export.enabled:
        from uservec.export.from_run import export_from_run

        t0 = time.perf_counter()
        bundle_dir = Path(export.out) if export.out else RunDir(out_dir).default_bundle_dir
        with memory.stage("export"):
            manifest = export_from_run(out_dir, bundle_dir, quantize=export.int8,
                                       overwrite=True)
        run.report["bundle"] = {"path": str(bundle_dir), "version": manifest.bundle_version,
                                "parity": manifest.parity}
        run.timings["export_s"] = time.perf_counter() - t0
    return finish_report(run, out_dir)
