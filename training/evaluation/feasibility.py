"""Can a configured task be evaluated on this data? Asked while planning, before any training.

A split that sklearn cannot make (fewer rows than classes in a stratified holdout, a class of one
in a label-fraction split, fewer labelled users than folds) used to surface as a ValueError after
pretraining. Planning makes every split first; what fails becomes one message that names the
task, what was counted and what to change. A P2 regime other than every label (``1.0``) that
cannot be made is skipped and reported as skipped (docs/protocols.md#p2-label-efficiency-regimes);
anything else stops the run (:class:`~training.evaluation.errors.InfeasibleEvaluation`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from uservec.training.evaluation.errors import InfeasibleEvaluation

#: what to change when a P2 split cannot be made, by the split that failed
PROFILE_FIXES = {
    "classes": "give the users file at least two classes for this attribute, or remove the task",
    "folds": "label more users (every class needs 5 for the 5 folds), or remove the task",
    "label_fraction": "label more users, use fewer or wider buckets, or drop the fraction "
                      "from eval.label_fractions",
    "holdout": "label more users, use fewer or wider buckets, or raise "
               "adapt.valid_fraction so the holdout can hold one user of each class",
}


@dataclass(eq=False)
class SplitFailure(Exception):
    """One P2 split that cannot be made: which, on how many rows of which classes, and why."""

    #: "classes" | "folds" | "label_fraction" | "holdout" (a key of :data:`PROFILE_FIXES`)
    split: str
    #: where, when not over every labelled user: "fold 2 of the 0.1 regime" ...
    where: str | None
    counts: Mapping[str, int]
    reason: str

    def describe(self) -> str:
        rows = sum(self.counts.values())
        where = f"{self.where}: " if self.where else ""
        return f"{where}{rows} labelled users ({format_counts(self.counts)}) {self.reason}"


def format_counts(counts: Mapping[str, int]) -> str:
    """``M 120, F 80``: class counts as a message shows them."""
    return ", ".join(f"{name} {count}" for name, count in counts.items())


def profile_message(task: str, attribute: str, failure: SplitFailure) -> str:
    """The one-paragraph message for a P2 split that stops the run."""
    return (f"task {task!r} (attribute {attribute!r}): {failure.describe()}. "
            f"Fix: {PROFILE_FIXES[failure.split]}.")


def skip_message(failure: SplitFailure) -> str:
    """The report line of a skipped P2 regime."""
    return f"skipped: {failure.describe()}. To evaluate it: {PROFILE_FIXES[failure.split]}."


#: what to change when a P3 task cannot be evaluated
CROSS_DOMAIN_FIX = ("choose a target domain with more users who have both source and target "
                    "events, or remove the task")
UNKNOWN_DOMAIN_FIX = "set target_domain to one of the dataset's domains, or remove the task"


def cross_domain_message(task: str, target: str | None, problem: str,
                         fix: str = CROSS_DOMAIN_FIX) -> str:
    """The message for a P3 task that stops the run."""
    return f"task {task!r} (cross-domain into {target!r}): {problem}. Fix: {fix}."


def raise_problems(problems: list[str]) -> None:
    """Stop with every problem found (one per line), or do nothing when there is none."""
    if len(problems) == 1:
        raise InfeasibleEvaluation(f"cannot evaluate {problems[0]}")
    if problems:
        raise InfeasibleEvaluation(
            "cannot evaluate these tasks:\n" + "\n".join(f"- {p}" for p in problems))
