"""Commands of the offline half: run, prepare, probe, download, config-docs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from uservec.cli.common import UserError, friendly


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: runs/<config name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set pretrain.epochs=3 (repeatable).")
@click.option("--fresh", is_flag=True, help="Ignore checkpoints in OUT and start over.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default=None,
              help="Where pretraining and task training run (pretrain.device; auto = CUDA "
                   "when present).")
@click.option("--nproc", type=click.IntRange(min=1), default=1, show_default=True,
              help="Data-parallel pretraining on this many processes (torchrun; gloo on the "
                   "CPU, NCCL on CUDA).")
@friendly
def run(config: Path, out_dir: Path | None, overrides: tuple[str, ...], fresh: bool,
        device: str | None, nproc: int) -> None:
    """Run a whole experiment described by CONFIG (TOML or YAML).

    Prepares the data, pretrains the encoder (resuming from OUT's checkpoint if present),
    evaluates it, and writes OUT/report.json and OUT/report.md.

    Example: uservec run configs/movielens-100k.toml --set pretrain.epochs=5 --nproc 2
    """
    from uservec.launch import inside_torchrun, launch
    from uservec.pipeline import run_experiment
    from uservec.training.config import load_config
    from uservec.training.run_dir import RunDir

    overrides = (*overrides, *([f"pretrain.device={device}"] if device else []))
    if nproc > 1 and not inside_torchrun():
        args = [str(config), *(["--out", str(out_dir)] if out_dir else []),
                *(arg for o in overrides for arg in ("--set", o)), *(["--fresh"] if fresh else [])]
        raise SystemExit(launch(nproc, args))
    cfg = load_config(config, list(overrides))
    out = out_dir or Path("runs") / cfg.name
    report = run_experiment(cfg, out, resume=not fresh)
    if not report:
        return  # a data-parallel rank other than 0: rank 0 reports
    click.echo(f"report: {RunDir(out).report_md}")
    click.echo(json.dumps(report.get("headline", {}), indent=2))


@click.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder whose prepared/ receives the data (default: runs/<config name>); "
                   "a later `uservec run` into it reuses the preparation.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable).")
@friendly
def prepare(config: Path, out_dir: Path | None, overrides: tuple[str, ...]) -> None:
    """Load and prepare CONFIG's dataset and its evaluation splits, and print its statistics.

    A task the data cannot evaluate (too few labelled users per class, an empty domain) stops
    here, before any training.

    Example: uservec prepare configs/ciao.toml
    """
    from uservec.training.config import load_config
    from uservec.training.run_dir import RunDir
    from uservec.training.runner import dataset_stats, prepare_stage

    cfg = load_config(config, list(overrides))
    dataset, _ = prepare_stage(cfg, RunDir(out_dir or Path("runs") / cfg.name))
    click.echo(json.dumps(dataset_stats(dataset), indent=2))


@click.command("config-docs")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the page here (default: print it).")
def config_docs(out_path: Path | None) -> None:
    """Generate the configuration reference (docs/configuration.md) from the config classes.

    Every key of every section with its type, default, allowed values and meaning, read from
    the code, so the page cannot drift from what the loader accepts.

    Example: uservec config-docs --out docs/configuration.md
    """
    from uservec.training.config_docs import render_config_docs

    text = render_config_docs()
    if out_path is None:
        click.echo(text, nl=False)
        return
    out_path.write_text(text, encoding="utf-8")
    click.echo(f"wrote {out_path}")


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@friendly
def probe(run_dir: Path) -> None:
    """Linear probe of RUN_DIR's frozen encoder on each task of its config.

    Profile tasks: fits the P2 logistic-regression baselines on frozen user vectors (last
    position, mean over the window, mean of item embeddings) instead of item bags, and on the bag
    with the mean vector appended, on the same folds, beside the majority class; tasks with
    low_label again on the low-label folds (10% of the labels). Cross-domain tasks: fits the P3
    ridge baseline on the frozen vector of each user's source history instead of the source bag,
    and on the bag with that vector appended, on the same users. Seconds to minutes, and it shows
    whether the pretrained representation carries the signal before adapters are trained.
    Writes RUN_DIR/probe.json.

    Example: uservec probe runs/movielens-100k
    """
    from uservec.training.probe.run import probe_run_dir
    from uservec.training.probe.table import probe_table

    result = probe_run_dir(run_dir)
    if result.is_empty():
        raise UserError(f"{run_dir}: its config declares no profile or cross-domain task")
    (run_dir / "probe.json").write_text(json.dumps(result.to_json(), indent=2))
    click.echo(probe_table(result))
    click.echo(f"wrote {run_dir / 'probe.json'}")


@click.command()
@click.argument("dataset", type=click.Choice(["movielens-100k"]))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/ml-100k"), show_default=True,
              help="Folder to download into.")
@click.option("--path", "local", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Use a local copy instead of downloading (checked, not copied).")
@friendly
def download(dataset: str, dest: Path, local: Path | None) -> None:  # noqa: ARG001 (one choice)
    """Fetch DATASET from its official site (or check a local copy with --path).

    MovieLens may not be redistributed, so uservec never ships it: download it yourself
    (GroupLens terms apply) and point a config's data.path at the folder.

    Example: uservec download movielens-100k --dest ~/data/ml-100k
    """
    from uservec.training.data.download import check_movielens, download_movielens

    folder = check_movielens(local) if local is not None else download_movielens(dest)
    click.echo(f"MovieLens-100K ready at {folder}; use data.path = \"{folder}\" in your config")
