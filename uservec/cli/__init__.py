"""The ``uservec`` command line.

    uservec run configs/movielens-100k.toml          # train + evaluate one experiment
    uservec --help                                   # every command, each with --help

One module per concern: ``training`` (run, prepare, probe, download, config-docs), ``demo``,
``bundle`` (export, bundle verify/info), ``serve``, ``embed``, ``bench`` and ``docs``; ``common``
holds logging and the one-line errors. Commands import their heavy dependencies (torch,
onnxruntime, FAISS) lazily so that ``--help`` is instant and the serving install (no torch) can run
``serve``, ``embed`` and ``bundle`` commands.
"""

from __future__ import annotations

import click

import uservec
from uservec.cli import bench, bundle, demo, docs, embed, serve, training
from uservec.cli.common import setup_logging

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(uservec.__version__, prog_name="uservec")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """uservec: one universal user vector from a behaviour sequence.

    Pretrain a NextItNet encoder on behaviour sequences, add per-task adapters and heads, export
    everything to one ONNX + FAISS bundle and serve it over REST.
    """
    setup_logging(verbose)


# modules, not their commands, are imported above: a command named like its module would
# otherwise hide the module behind the package attribute
for _command in (training.run, training.prepare, training.config_docs, training.probe,
                training.download, demo.demo, bundle.export_cmd, bundle.bundle, serve.serve,
                embed.embed_cmd, bench.bench, docs.docs_cmd):
    main.add_command(_command)
