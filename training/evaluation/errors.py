"""The two ways an evaluation can be refused: it would leak, or it cannot be made at all."""

from __future__ import annotations


class LeakError(RuntimeError):
    """Something a P3 model trains on contains a test user's hidden target events."""


class InfeasibleEvaluation(ValueError):
    """A configured task cannot be evaluated on this data (too few users or labels for a split).

    Raised while planning, before any training, with a message that names the task, what it
    counted and what to change; the CLI prints it without a traceback and exits with status 2.
    """
