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
    """Load and prepare CONFIG's dataset only, and print its statistics.

    Example: uservec prepare configs/ciao.toml
    """
    from uservec.training.config import load_config
    from uservec.training.data.prepare import prepare_run_dataset
    from uservec.training.run_dir import RunDir
    from uservec.training.runner import dataset_stats

    cfg = load_config(config, list(overrides))
    dataset = prepare_run_dataset(cfg.data, RunDir(out_dir or Path("runs") / cfg.name))
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
def download(dataset: str, dest: Path, local: Path | None) -> None:
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
              show_default=True, help="Run folder; the bundle goes to OUT/bundle.")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--no-serve", is_flag=True, help="Stop after exporting the bundle.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="Override a config value (repeatable).")
@_friendly
def demo(config_path: Path | None, out_dir: Path, host: str, port: int, no_serve: bool,
         overrides: tuple[str, ...]) -> None:
    """The main job: generate data, pretrain, train adapters, export, serve, print curl examples.

    Needs no data download and no Redis (in-process cache). Use --config to run it on a real
    dataset's config instead, e.g. --config configs/movielens-100k.toml.

    Example: uservec demo --port 8000
    """
    from uservec.demo import run_demo
    from uservec.training.config import load_config
    from uservec.training.run_dir import RunDir

    path = config_path or shipped_config("demo")
    cfg = load_config(path, ["export.enabled=true", *overrides])
    bundle_dir, examples = run_demo(cfg, out_dir)
    base = f"http://{host}:{port}"
    click.echo(f"\nbundle: {bundle_dir}\nreport: {RunDir(out_dir).report_md}\n")
    click.echo("Try the service (in another terminal):\n")
    click.echo(examples.replace("{BASE}", base) + "\n")
    if no_serve:
        click.echo(f"serve it later with: uservec serve --bundle {bundle_dir}")
        return
    from uservec.service.settings import Settings

    click.echo(f"serving on {base} (Ctrl-C to stop)")
    _serve(Settings(bundle_path=bundle_dir, host=host, port=port, json_logs=False))


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

    manifest = export_from_run(run_dir, out_dir, quantize=quantize, overwrite=overwrite,
                               private=private)
    click.echo(f"bundle {manifest.bundle_version} written to {out_dir}")
    for line in parity_summary(manifest.parity):
        click.echo(line)
    click.echo(f"full parity report: {out_dir / 'manifest.json'} (\"parity\")")


def parity_summary(parity: dict[str, Any]) -> list[str]:
    """One line per graph: how close onnxruntime came to torch, and the int8 verdict."""
    lines = []
    fp32 = parity.get("fp32")
    if fp32:
        worst = max(fp32.get("max_abs_diff", {}).values(), default=0.0)
        lines.append(f"fp32 parity: max abs diff {worst:.2e} over {fp32.get('n_sequences')} "
                     "held-out sequences")
    int8 = parity.get("int8")
    if int8:
        verdict = "kept" if int8.get("accepted") else "refused (fp32 only)"
        cosine = int8.get("user_vector_cosine", {}).get("min")
        kept_fp32 = int8.get("fp32_blocks") or 0
        lines.append(
            f"int8 ({int8.get('method')}): {verdict}; {int8.get('speedup_vs_fp32', 0):.2f}x fp32 "
            f"speed; user-vector cosine min {cosine if cosine is None else f'{cosine:.4f}'}"
            + (f"; residual convolutions of {kept_fp32} block(s) kept fp32" if kept_fp32 else "")
        )
    return lines


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
@click.option("--only", "sections", multiple=True,
              type=click.Choice(["serving", "cache", "compute", "int8", "train_speed"]),
              help="Run only these sections of the main suite (repeatable).")
@click.option("--quick", is_flag=True, help="Tiny sizes: seconds, for smoke-testing the suite.")
@click.option("--seed", type=int, default=0, show_default=True)
def bench(out_dir: Path, bundle_path: Path | None, scale: bool, robustness: bool,
          sections: tuple[str, ...], quick: bool, seed: int) -> None:
    """Measure serving overhead, cache, micro-batching, FLOP/s, int8, training speed.

    Every figure is a ratio against a reference measured in the same run (the machine is shared
    and noisy). The main suite takes under 15 minutes on 2 cores.

    Example: uservec bench --out bench/ && uservec bench --scale --out bench/

    int8 metric change on real data: export a run with --int8, then
    uservec bench --bundle bundles/ciao --only int8 --out bench-int8/
    """
    from uservec.bench import run_bench

    results = run_bench(out_dir, bundle_path, quick=quick, scale=scale, robustness=robustness,
                        seed=seed, only=sections)
    click.echo((out_dir / "bench.md").read_text())
    click.echo(f"wrote {out_dir / 'bench.json'} ({len(results)} sections)")


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
@_friendly
def bundle_info_cmd(bundle_dir: Path, as_json: bool) -> None:
    """Print a summary of BUNDLE_DIR: version, model, tasks, parity numbers.

    Example: uservec bundle info bundles/movielens-100k
    """
    from uservec.contract.verify import bundle_info

    info = bundle_info(bundle_dir)
    if as_json:
        click.echo(json.dumps(info, indent=2, default=str))
        return
    for key, value in info.items():
        if isinstance(value, dict | list):
            click.echo(f"{key}:")
            click.echo("  " + json.dumps(value, default=str, indent=2).replace("\n", "\n  "))
        else:
            click.echo(f"{key}: {value}")


if __name__ == "__main__":
    main()
