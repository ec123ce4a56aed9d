"""What every command shares: logging, the shipped configs, and one-line errors.

The project's own error types become :class:`click.ClickException`s here, so a bad config, bad
data or a broken bundle prints one line and a stable exit code instead of a traceback.
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from uservec.contract.logs import quiet_third_party


def setup_logging(verbose: int) -> None:
    """Log to stderr: warnings by default, INFO with ``-v``, DEBUG with ``-vv``."""
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


class UserError(click.ClickException):
    """An expected failure (bad data, bad bundle): message only, no traceback, exit code 1."""


class ConfigProblem(click.ClickException):
    """A config value the schema refuses: one line naming the key, exit code 2 (a usage error,
    raised before any data is read)."""

    exit_code = 2


class CannotEvaluate(click.ClickException):
    """A configured task cannot be evaluated on this data: a usage error, said before training."""

    exit_code = 2


def _error_types() -> tuple[tuple[type[Exception], ...], ...]:
    """(user, config, usage) error types of the installed packages; a serving-only install has
    no training package, so its error types are simply absent."""
    from uservec.contract.manifest import BundleError
    from uservec.export import ExportError

    # OSError: a missing input, an --out under a file, no permission: say it, no traceback
    user_errors: tuple[type[Exception], ...] = (BundleError, ExportError, OSError)
    try:
        from uservec.training.checkpoint import CheckpointError
        from uservec.training.config import ConfigError
        from uservec.training.data.prepare import DataError
        from uservec.training.evaluation.errors import InfeasibleEvaluation, LeakError
        from uservec.training.run_dir import RunDirError
    except ImportError:  # serving-only install: no training package deps
        return user_errors, (), ()
    user_errors += (CheckpointError, DataError, LeakError, RunDirError)
    return user_errors, (ConfigError,), (InfeasibleEvaluation,)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the project's own error types into one-line CLI errors (exit 2 for a bad config or
    a task the data cannot evaluate, 1 for the rest)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        user_errors, config_errors, usage_errors = _error_types()
        try:
            return func(*args, **kwargs)
        except config_errors as exc:
            raise ConfigProblem(str(exc)) from exc
        except usage_errors as exc:
            raise CannotEvaluate(str(exc)) from exc
        except user_errors as exc:
            raise UserError(str(exc)) from exc

    return wrapper
