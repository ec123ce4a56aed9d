"""``uservec run --nproc N``: start N data-parallel processes through torchrun.

The processes are ``torchrun --standalone --nproc-per-node N -m uservec.cli run ...``: the same
command without ``--nproc``, which :mod:`uservec.training.distributed` then finds in the
environment. Several machines: run the printed command on each with ``--nnodes``, ``--node-rank``
and a rendezvous endpoint instead of ``--standalone`` (docs/scaling.md).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Sequence

logger = logging.getLogger(__name__)


def torchrun_command(nproc: int, run_args: Sequence[str]) -> list[str]:
    """The torchrun command line that runs ``uservec run RUN_ARGS`` on ``nproc`` processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "uservec.cli", "run", *run_args]


def inside_torchrun() -> bool:
    """True in a process torchrun started (it sets WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ


def launch(nproc: int, run_args: Sequence[str]) -> int:
    """Run ``uservec run RUN_ARGS`` on ``nproc`` local processes; their exit code."""
    command = torchrun_command(nproc, run_args)
    logger.info("starting %d processes: %s", nproc, " ".join(command))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return subprocess.run(command, env=env, check=False).returncode
