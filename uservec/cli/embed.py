"""``uservec embed``: every user of an event file, with a bundle's numbers, into Parquet."""

from __future__ import annotations

from pathlib import Path

import click

from uservec.cli.common import UserError, friendly


@click.command("embed")
@click.option("--bundle", "bundle_path", required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Bundle folder whose model embeds the users.")
@click.option("--input", "input_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Event file: CSV, CSV.GZ or Parquet, one row per event, in any order.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Parquet file to write: user_id, events_used, vector[, head columns].")
@click.option("--heads", is_flag=True,
              help="Also write each profile head's <task>_label and <task>_probabilities.")
@click.option("--attribute", "attributes", multiple=True, metavar="NAME",
              help="With --heads: only this profile head (repeatable; default: all).")
@click.option("--decision", type=click.Choice(["as_trained", "prior_adjusted"]),
              default="as_trained", show_default=True,
              help="Profile decision rule, as in POST /predict-profile.")
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="User sequences per onnxruntime run.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes running the model (users are shared out by a hash of their id).")
@click.option("--threads", type=click.IntRange(min=0), default=0, show_default=True,
              help="onnxruntime threads per worker; 0 = the cores divided among the workers.")
@click.option("--user-col", default="user_id", show_default=True)
@click.option("--item-col", default="item_id", show_default=True)
@click.option("--timestamp-col", default="timestamp", show_default=True,
              help="Unix seconds or ISO-8601; orders each user's events.")
@click.option("--domain-col", default=None,
              help="Item domain column [default: 'domain' when the file has one].")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=1_000_000, show_default=True,
              help="Input rows read at once.")
@click.option("--partition-rows", type=click.IntRange(min=1), default=1_000_000,
              show_default=True, help="Rows of one spill partition held in memory at most.")
@click.option("--tmp-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the spill files (about the input's size) [default: system temp].")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@friendly
def embed_cmd(bundle_path: Path, input_path: Path, out_path: Path, heads: bool,
              attributes: tuple[str, ...], decision: str,
              batch_size: int, workers: int, threads: int, user_col: str, item_col: str,
              timestamp_col: str, domain_col: str | None, chunk_rows: int, partition_rows: int,
              tmp_dir: Path | None, overwrite: bool) -> None:
    """Embed every user of an event file with a bundle's model, into one Parquet file.

    The numbers are those of POST /embed (and, with --heads, POST /predict-profile) for the same
    events: each user's events are ordered by (timestamp, item_id) and the latest max_len are
    encoded, as the service does. The file is streamed: memory is bounded by --chunk-rows and
    --partition-rows, not by the file's size, and it needs no grouping by user. Serve install
    is enough (no torch).

    Example: uservec embed --bundle bundles/ml-100k --input events.csv.gz --out vectors.parquet
    """
    from uservec.contract.decision import Decision
    from uservec.embed import EmbedError, EmbedOptions, EventColumns, embed_file

    if out_path.exists() and not overwrite:
        raise UserError(f"{out_path} exists; pass --overwrite to replace it")
    try:
        rule: Decision = "prior_adjusted" if decision == "prior_adjusted" else "as_trained"
        options = EmbedOptions(
            heads=heads, attributes=attributes, decision=rule, batch_size=batch_size,
            workers=workers, threads=threads, chunk_rows=chunk_rows,
            partition_rows=partition_rows, tmp_dir=tmp_dir,
        )
        summary = embed_file(bundle_path, input_path, out_path, options=options,
                             columns=EventColumns(user_col, item_col, timestamp_col, domain_col))
    except EmbedError as exc:
        raise UserError(str(exc)) from exc
    click.echo(f"{summary.users:,} users ({summary.events:,} events) in {summary.seconds:.1f} s "
               f"({summary.users_per_s:,.0f} users/s, {workers} worker(s)) -> {out_path}")
