"""The ``uservec`` command line.

    uservec run configs/movielens-100k.toml          # train + evaluate one experiment
    uservec --help                                   # every command, each with --help

Commands import their heavy dependencies (torch, onnxruntime, FAISS) lazily so that ``--help`` is
instant and the serving install (no torch) can run ``serve`` and ``bundle`` commands.
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import uservec
from uservec.contract.logs import quiet_third_party

if TYPE_CHECKING:  # the service extra may not be installed; imported lazily below
    from uservec.service.settings import Settings

log = logging.getLogger("uservec")


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    # Training and export report progress through INFO logs; keep them visible by default.
    logging.getLogger("uservec").setLevel(min(level, logging.INFO))
    quiet_third_party(level)


def shipped_config(name: str) -> Path:
    """A config shipped inside the package (``configs/NAME.toml``), wherever it is installed."""
    from importlib.resources import files

    return Path(str(files("uservec.configs") / f"{name}.toml"))


class _UserError(click.ClickException):
    """An expected failure (bad data, bad bundle): message only, no traceback, exit code 1."""


class _ConfigProblem(click.ClickException):
    """A config value the schema refuses: one line naming the key, exit code 2 (a usage error,
    raised before any data is read)."""

    exit_code = 2


class _CannotEvaluate(click.ClickException):
    """A configured task cannot be evaluated on this data: a usage error, said before training."""

    exit_code = 2


def _friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's own error types into one-line CLI errors (exit 2 for a bad config or
    a task the data cannot evaluate, 1 for the rest)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from uservec.contract.manifest import BundleError
        from uservec.export import ExportError

        # OSError: a missing input, an --out under a file, no permission: say it, no traceback
        user_errors: tuple[type[Exception], ...] = (BundleError, ExportError, OSError)
        config_errors: tuple[type[Exception], ...] = ()
        usage_errors: tuple[type[Exception], ...] = ()
        try:
            from uservec.training.checkpoint import CheckpointError
            from uservec.training.config import ConfigError
            from uservec.training.data.prepare import DataError
            from uservec.training.evaluation.errors import InfeasibleEvaluation, LeakError
            from uservec.training.run_dir import RunDirError

            user_errors += (CheckpointError, DataError, LeakError, RunDirError)
            config_errors = (ConfigError,)
            usage_errors = (InfeasibleEvaluation,)
        except ImportError:  # serving-only install: no training package deps
            pass
        try:
            return func(*args, **kwargs)
        except config_errors as exc:
            raise _ConfigProblem(str(exc)) from exc
        except usage_errors as exc:
            raise _CannotEvaluate(str(exc)) from exc
        except user_errors as exc:
            raise _UserError(str(exc)) from exc

    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(uservec.__version__, prog_name="uservec")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def main(verbose: int) -> None:
    """uservec: one universal user vector from a behaviour sequence.

    Pretrain a NextItNet encoder on behaviour sequences, add per-task adapters and heads, export
    everything to one ONNX + FAISS bundle and serve it over REST.
    """
    _setup_logging(verbose)


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Output folder (default: runs/<config name>).")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value, e.g. --set pretrain.epochs=3 (repeatable).")
@click.option("--fresh", is_flag=True, help="Ignore checkpoints in OUT and start over.")
@_friendly
def run(config: Path, out_dir: Path | None, overrides: tuple[str, ...], fresh: bool) -> None:
    """Run a whole experiment described by CONFIG (TOML or YAML).

    Prepares the data, pretrains the encoder (resuming from OUT's checkpoint if present),
    evaluates it, and writes OUT/report.json and OUT/report.md.

    Example: uservec run configs/movielens-100k.toml --set pretrain.epochs=5
    """
    from uservec.pipeline import run_experiment
    from uservec.training.config import load_config
    from uservec.training.run_dir import RunDir

    cfg = load_config(config, list(overrides))
    out = out_dir or Path("runs") / cfg.name
    report = run_experiment(cfg, out, resume=not fresh)
    click.echo(f"report: {RunDir(out).report_md}")
    click.echo(json.dumps(report.get("headline", {}), indent=2))


@main.command()
@click.argument("config", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=None,
              help="Run folder whose prepared/ receives the data (default: runs/<config name>); "
                   "a later `uservec run` into it reuses the preparation.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable).")
@_friendly
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


@main.command("config-docs")
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


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_friendly
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
        raise _UserError(f"{run_dir}: its config declares no profile or cross-domain task")
    (run_dir / "probe.json").write_text(json.dumps(result.to_json(), indent=2))
    click.echo(probe_table(result))
    click.echo(f"wrote {run_dir / 'probe.json'}")


@main.command()
@click.argument("dataset", type=click.Choice(["movielens-100k"]))
@click.option("--dest", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/ml-100k"), show_default=True,
              help="Folder to download into.")
@click.option("--path", "local", type=click.Path(exists=True, file_okay=False, path_type=Path),
              default=None, help="Use a local copy instead of downloading (checked, not copied).")
@_friendly
def download(dataset: str, dest: Path, local: Path | None) -> None:  # noqa: ARG001 (one choice)
    """Fetch DATASET from its official site (or check a local copy with --path).

    MovieLens may not be redistributed, so uservec never ships it: download it yourself
    (GroupLens terms apply) and point a config's data.path at the folder.

    Example: uservec download movielens-100k --dest ~/data/ml-100k
    """
    from uservec.training.data.download import check_movielens, download_movielens

    folder = check_movielens(local) if local is not None else download_movielens(dest)
    click.echo(f"MovieLens-100K ready at {folder}; use data.path = \"{folder}\" in your config")


@main.command()
@click.option("--config", "config_path", default=None,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Experiment config (default: the shipped configs/demo.toml).")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("runs/demo"),
              show_default=True,
              help="Run folder; each run's bundle goes to its own OUT/bundles/<time> folder and "
                   "OUT/bundles/current points at the newest.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Stop after exporting the bundle.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable).")
@_friendly
def demo(config_path: Path | None, out_dir: Path, host: str, port: int, no_serve: bool,
         overrides: tuple[str, ...]) -> None:
    """The main job: generate data, pretrain, train adapters, export, serve, print examples.

    Needs no data download and no Redis (in-process cache). The port is checked before any
    training; the bundle is written into a new versioned folder (a server already running on an
    earlier one keeps its bundle) and served by `uservec serve` in a child process, without torch.
    Use --config to run it on a real dataset's config, e.g. --config configs/movielens-100k.toml.

    Example: uservec demo --port 8000
    """
    from uservec.demo import port_problem, run_demo
    from uservec.training.config import load_config
    from uservec.training.run_dir import RunDir

    problem = None if no_serve else port_problem(host, port)
    if problem:
        raise _UserError(problem)
    path = config_path or shipped_config("demo")
    cfg = load_config(path, ["export.enabled=true", *overrides])
    result = run_demo(cfg, out_dir)
    base = f"http://{host}:{port}"
    click.echo(f"\nbundle: {result.path} (version {result.version}; "
               f"{result.path.parent / 'current'} points at it)\n"
               f"report: {RunDir(out_dir).report_md}\n")
    click.echo("Try the service (in another terminal) with curl:\n")
    click.echo(curl_text(result, base) + "\n")
    click.echo("or with the Python client (pip install uservec; no torch needed):\n")
    click.echo(client_text(result, base) + "\n")
    if no_serve:
        click.echo(f"serve it later with: uservec serve --bundle {result.path}")
        return
    _serve_demo(result.path, host, port, out_dir / "serve.log")


def curl_text(result: Any, base: str) -> str:
    from uservec.demo import curl_examples

    return curl_examples(base, result.events, result.target)


def client_text(result: Any, base: str) -> str:
    from uservec.demo import client_examples

    return client_examples(base, result.events, result.target)


def _serve_demo(bundle_dir: Path, host: str, port: int, log_path: Path) -> None:
    """Serve through `uservec serve` in a child process until Ctrl-C (or the child stops)."""
    import signal
    import subprocess

    from uservec.demo import process_memory, serve_child, wait_ready

    base = f"http://{host}:{port}"
    child = serve_child(bundle_dir, host, port, log_path)
    # SIGTERM to the demo stops its server too (the finally below), not only the demo
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        try:
            wait_ready(base, child)
        except RuntimeError as exc:
            raise _UserError(f"{exc}; see {log_path}") from exc
        torch_loaded, rss = process_memory(child.pid)
        memory = "" if rss is None else f", RSS {rss:.0f} MB"
        torch_note = {True: ", torch LOADED", False: ", no torch", None: ""}[torch_loaded]
        click.echo(f"serving on {base} (uservec serve, pid {child.pid}{torch_note}{memory}; "
                   f"log {log_path}); Ctrl-C to stop")
        code = child.wait()
        if code not in (0, -signal.SIGTERM, -signal.SIGINT):  # stopped by a signal: no error
            raise _UserError(f"the server stopped with code {code}; see {log_path}")
        click.echo("the server stopped")
    except KeyboardInterrupt:
        click.echo("stopping the server")
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


@main.command("export")
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
@_friendly
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


@main.command()
@click.option("--bundle", "bundle_path", type=click.Path(path_type=Path), default=None,
              help="Bundle folder to serve (env USERVEC_BUNDLE_PATH).")
@click.option("--host", default=None, help="Bind address (env USERVEC_HOST, default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (env USERVEC_PORT, default 8000).")
@click.option("--redis-url", default=None,
              help="Use Redis as the cache, e.g. redis://127.0.0.1:6379/0 (env USERVEC_REDIS_URL).")
@click.option("--int8", "use_int8", is_flag=True, default=None,
              help="Serve the bundle's int8 model when it has one (env USERVEC_USE_INT8).")
def serve(
    bundle_path: Path | None, host: str | None, port: int | None, redis_url: str | None,
    use_int8: bool | None,
) -> None:
    """Serve a bundle over HTTP: /embed, /recommend, /predict-profile, /health, /metrics.

    Every setting can also come from a USERVEC_* environment variable (see the README);
    flags win. SIGTERM drains in-flight requests; SIGHUP reloads the bundle.

    Example: uservec serve --bundle bundles/movielens-100k --port 8000
    """
    from pydantic import ValidationError

    from uservec.service.settings import Settings

    flags: dict[str, Any] = {"bundle_path": bundle_path, "host": host, "port": port,
                             "redis_url": redis_url, "use_int8": use_int8}
    try:
        settings = Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        raise _UserError(settings_problems(exc)) from exc
    _serve(settings)


@main.command("embed")
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
@_friendly
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
        raise _UserError(f"{out_path} exists; pass --overwrite to replace it")
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
        raise _UserError(str(exc)) from exc
    click.echo(f"{summary.users:,} users ({summary.events:,} events) in {summary.seconds:.1f} s "
               f"({summary.users_per_s:,.0f} users/s, {workers} worker(s)) -> {out_path}")


def _serve(settings: Settings) -> None:
    """Serve until SIGTERM / Ctrl-C; a bundle that fails its checks is one line, not a traceback
    (``service.server.serve`` loads it before the server starts)."""
    from uservec.contract.manifest import BundleError
    from uservec.service.server import serve as serve_forever

    try:
        serve_forever(settings)
    except BundleError as exc:
        raise _UserError(f"cannot serve {settings.bundle_path}: {exc}") from exc


def settings_problems(exc: Any) -> str:
    """One line per invalid service setting, naming its USERVEC_* variable and the bad value."""
    lines = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        lines.append(f"invalid setting {field} (USERVEC_{field.upper()}={error.get('input')!r}): "
                     f"{error['msg']}")
    return "; ".join(lines) or str(exc)


@main.command()
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
@click.option("--only", "sections", multiple=True,
              type=click.Choice(["serving", "cache", "compute", "int8", "train_speed"]),
              help="Run only these sections of the main suite (repeatable).")
@click.option("--quick", is_flag=True, help="Tiny sizes: seconds, for smoke-testing the suite.")
@click.option("--seed", type=int, default=0, show_default=True)
def bench(out_dir: Path, bundle_path: Path | None, scale: bool, robustness: bool,
          embed_only: bool, sections: tuple[str, ...], quick: bool, seed: int) -> None:
    """Measure serving overhead, cache, micro-batching, FLOP/s, int8, training speed.

    Every figure is a ratio against a reference measured in the same run (the machine is shared
    and noisy). The main suite takes under 15 minutes on 2 cores.

    Example: uservec bench --out bench/ && uservec bench --scale --out bench/

    int8 metric change on real data: export a run with --int8, then
    uservec bench --bundle bundles/ciao --only int8 --out bench-int8/
    """
    from uservec.bench import run_bench

    results = run_bench(out_dir, bundle_path, quick=quick, scale=scale, robustness=robustness,
                        seed=seed, only=sections, embed=embed_only)
    click.echo((out_dir / "bench.md").read_text())
    click.echo(f"wrote {out_dir / 'bench.json'} ({len(results)} sections)")


@main.command("docs")
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
                raise _UserError("out of date (run `uservec docs`): "
                                 + ", ".join(map(str, outdated)))
            click.echo("generated docs are up to date")
            return
        if run_dir is not None:
            click.echo(f"added {add_report(root, run_dir, name)}")
        if bench_path is not None:
            click.echo(f"added {add_bench(root, bench_path, name)}")
        changed = write(root)
    except DocsError as exc:
        raise _UserError(str(exc)) from exc
    click.echo("wrote " + ", ".join(map(str, changed)) if changed else "nothing to change")


@main.group()
def bundle() -> None:
    """Inspect and check exported bundles (no torch needed)."""


@bundle.command("verify")
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--no-smoke", is_flag=True, help="Skip the smoke inference (checksums/schema only).")
@_friendly
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
@_friendly
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
        raise _UserError(f"{bundle_dir} fails its checks: {info['problem']}")


if __name__ == "__main__":
    main()
