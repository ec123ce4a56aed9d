"""``uservec docs``: the generated pages and README tables, from the committed JSON inputs."""

from __future__ import annotations

from pathlib import Path

import click

from uservec.cli.common import UserError


@click.command("docs")
@click.option("--root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=Path("."), show_default=True,
              help="Repository root (the folder holding README.md and docs/).")
@click.option("--check", is_flag=True,
              help="Change nothing; exit 1 naming every generated file that is out of date.")
@click.option("--add-report", "run_dir",
              type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="First copy RUN_DIR/report.json to docs/data/reports/<name>.json.")
@click.option("--add-bench", "bench_path", type=click.Path(exists=True, path_type=Path),
              default=None, help="First copy a bench.json (or the folder holding one) to "
              "docs/data/bench/<name>.json.")
@click.option("--name", default=None,
              help="Input name for --add-report / --add-bench (default: the run's config name / "
                   "the bench folder's name).")
def docs_cmd(root: Path, check: bool, run_dir: Path | None, bench_path: Path | None,
             name: str | None) -> None:
    """Regenerate docs/results.md, docs/benchmarks.md and the README's summary tables.

    They are rendered from the committed JSON inputs: run reports in docs/data/reports/ and
    benchmark outputs in docs/data/bench/, never typed by hand.

    Example: uservec docs --add-report runs/movielens-100k
    """
    from uservec.docs import DocsError, add_bench, add_report, stale, write

    try:
        if check:
            outdated = stale(root)
            if outdated:
                raise UserError("out of date (run `uservec docs`): "
                                + ", ".join(map(str, outdated)))
            click.echo("generated docs are up to date")
            return
        if run_dir is not None:
            click.echo(f"added {add_report(root, run_dir, name)}")
        if bench_path is not None:
            click.echo(f"added {add_bench(root, bench_path, name)}")
        changed = write(root)
    except DocsError as exc:
        raise UserError(str(exc)) from exc
    click.echo("wrote " + ", ".join(map(str, changed)) if changed else "nothing to change")
