"""``uservec bench``: serving, cache, compute, int8 and training-speed measurements."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench"), show_default=True, help="Writes bench.json and bench.md here.")
@click.option("--bundle", "bundle_path", type=click.Path(exists=True, path_type=Path), default=None,
              help="Benchmark this bundle (e.g. a real run's, for int8 metric change); default: "
                   "a default-size model built on the fly.")
@click.option("--scale", is_flag=True,
              help="Only 1M-item retrieval: exact vs IVF vs HNSW (<30 min).")
@click.option("--robustness", is_flag=True,
              help="Only load, fault (Redis kill, reload under load) and fuzzing runs.")
@click.option("--embed", "embed_only", is_flag=True,
              help="Only bulk embedding (`uservec embed`): users/s and peak RSS at a few file "
                   "sizes, 1 vs N workers (<15 min on 2 cores).")
@click.option("--user-state", "user_state", is_flag=True,
              help="Only user state: one appended event vs re-encoding 50, 100 and max_len "
                   "events (engine, service and HTTP), state bytes, Redis round trips.")
@click.option("--scaling", "scaling", multiple=True,
              type=click.Choice(["ddp", "baselines", "data_scale"]),
              help="Only training at scale: ddp (events/s, 1 vs 2 processes), baselines (P3 "
                   "baselines' time and peak memory up to 32k users), data_scale (preparation "
                   "and one epoch at 1M-50M generated events). Repeatable.")
@click.option("--only", "sections", multiple=True,
              type=click.Choice(["serving", "cache", "compute", "int8", "train_speed"]),
              help="Run only these sections of the main suite (repeatable).")
@click.option("--quick", is_flag=True, help="Tiny sizes: seconds, for smoke-testing the suite.")
@click.option("--seed", type=int, default=0, show_default=True)
def bench(out_dir: Path, bundle_path: Path | None, scale: bool, robustness: bool,
          embed_only: bool, scaling: tuple[str, ...], user_state: bool,
          sections: tuple[str, ...], quick: bool,
          seed: int) -> None:
    """Measure serving overhead, cache, micro-batching, FLOP/s, int8, training speed.

    Every figure is a ratio against a reference measured in the same run (the machine is shared
    and noisy). The main suite takes under 15 minutes on 2 cores.

    Example: uservec bench --out bench/ && uservec bench --scale --out bench/

    int8 metric change on real data: export a run with --int8, then
    uservec bench --bundle bundles/ciao --only int8 --out bench-int8/
    """
    from uservec.bench import run_bench

    results = run_bench(out_dir, bundle_path, quick=quick, scale=scale, robustness=robustness,
                        seed=seed, only=sections, embed=embed_only, scaling=scaling,
                        user_state=user_state)
    click.echo((out_dir / "bench.md").read_text())
    click.echo(f"wrote {out_dir / 'bench.json'} ({len(results)} sections)")
