"""``uservec export`` writes a bundle; ``uservec bundle verify|info`` checks one (no torch)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from uservec.cli.common import UserError, friendly


@click.command("export")
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), required=True,
              help="Bundle folder to write (refused if it exists, unless --overwrite).")
@click.option("--int8", "quantize", is_flag=True,
              help="Also write a static int8 model (kept only if it passes its parity check; "
              "the first blocks' residual convolutions stay fp32 where that is needed).")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle folder.")
@click.option("--private", is_flag=True,
              help="Readable by the owner only (files 0600, folders 0700); by default a bundle "
                   "is world-readable (0644 / 0755), so a server running as another user, e.g. "
                   "in a container, can read it.")
@friendly
def export_cmd(run_dir: Path, out_dir: Path, quantize: bool, overwrite: bool,
               private: bool) -> None:
    """Export RUN_DIR (a finished `uservec run`) to a versioned bundle.

    Writes one fused ONNX graph (user vector + every task head), the vocabulary, item vectors and
    FAISS indexes per recommendation head, popularity lists and manifest.json with checksums.
    Fails, writing nothing, unless onnxruntime reproduces PyTorch.

    Example: uservec export runs/movielens-100k --out bundles/movielens-100k
    """
    from uservec.export.from_run import export_from_run
    from uservec.export.parity import parity_summary

    manifest = export_from_run(run_dir, out_dir, quantize=quantize, overwrite=overwrite,
                               private=private)
    click.echo(f"bundle {manifest.bundle_version} written to {out_dir}")
    for line in parity_summary(manifest.parity):
        click.echo(line)
    click.echo(f"full parity report: {out_dir / 'manifest.json'} (\"parity\")")


@click.group()
def bundle() -> None:
    """Inspect and check exported bundles (no torch needed)."""


@bundle.command("verify")
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--no-smoke", is_flag=True, help="Skip the smoke inference (checksums/schema only).")
@friendly
def bundle_verify(bundle_dir: Path, no_smoke: bool) -> None:
    """Check BUNDLE_DIR: schema version, every file's sha256, and a smoke inference.

    Exits 1 naming the first missing, truncated or tampered file.

    Example: uservec bundle verify bundles/movielens-100k
    """
    from uservec.contract.verify import load_and_verify

    manifest = load_and_verify(bundle_dir, smoke=not no_smoke)
    click.echo(f"OK {bundle_dir}: bundle {manifest.bundle_version}, {len(manifest.files)} files, "
               f"{len(manifest.tasks)} tasks")


@bundle.command("info")
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-verify", is_flag=True,
              help="Skip the checks (checksums, schema, catalogues); `verified` is then null.")
@friendly
def bundle_info_cmd(bundle_dir: Path, as_json: bool, no_verify: bool) -> None:
    """Print a summary of BUNDLE_DIR: version, model, tasks, parity numbers, and whether it passes
    the checks `uservec bundle verify` runs (all but the smoke inference). Exits 1 when it fails
    them, after printing the summary and the problem.

    Example: uservec bundle info bundles/movielens-100k
    """
    from uservec.contract.verify import bundle_info

    info = bundle_info(bundle_dir, verify=not no_verify)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
    else:
        for key, value in info.items():
            if isinstance(value, dict | list):
                click.echo(f"{key}:")
                click.echo("  " + json.dumps(value, default=str, indent=2).replace("\n", "\n  "))
            else:
                click.echo(f"{key}: {value}")
    if info["verified"] is False:
        raise UserError(f"{bundle_dir} fails its checks: {info['problem']}")
