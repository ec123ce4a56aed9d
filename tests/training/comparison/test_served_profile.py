"""training.comparison.served_profile: wide, residual wide+deep, and the served-kind choice."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
from adapt_helpers import FAST, MAX_LEN, labelled_data, random_pretrained

from uservec.training.comparison.final import TaskContext
from uservec.training.comparison.served_profile import (
    best_validation,
    evaluate_served,
    item_columns,
    residual_logits,
    vocabulary_bags,
    wide_data,
)
from uservec.training.evaluation.plan import ProfileSplit
from uservec.training.evaluation.profile_eval import fold_data
from uservec.training.evaluation.profile_split import Fold, ProfileLabels, holdout_split
from uservec.training.profile_task import fit_profile_task, profile_problem
from uservec.training.wide.profile import rule_columns, rule_score

SETTINGS = dataclasses.replace(FAST, methods=("adapter",), max_epochs=3, patience=3)


def _context(dataset):
    pretrained = random_pretrained()
    pristine = dataclasses.replace(pretrained, encoder=copy.deepcopy(pretrained.encoder))
    return TaskContext(dataset, pristine, pretrained, SETTINGS, MAX_LEN, 0, 10)


def _folds(n: int) -> tuple[Fold, ...]:
    rows = np.arange(n)
    test = rows % 4 == 0
    return (Fold(train=rows[~test], test=rows[test], pool=rows[~test]),)


def test_residual_loss_reads_the_fixed_logits_and_the_head_starts_at_zero():
    codes = np.array([0, 1, 1, 0])
    offset = np.array([[2.0, -2.0], [-1.0, 1.0], [0.5, 0.0], [0.0, 3.0]])
    problem = profile_problem(torch.zeros(4, MAX_LEN, dtype=torch.long), codes, 2, SETTINGS, 16,
                              offset=offset)
    hp = dataclasses.replace(problem_hp(), class_weight=0.0)
    rows = torch.arange(4)
    loss = problem.loss_fn(torch.zeros(4, 2), rows, hp)
    expected = torch.nn.functional.cross_entropy(torch.tensor(offset, dtype=torch.float32),
                                                 torch.tensor(codes))
    torch.testing.assert_close(loss, expected)
    head = torch.nn.Linear(16, 2)
    assert problem.init_head is not None
    problem.init_head(head, torch.ones(3, 16), hp)
    assert not any(p.abs().sum() for p in head.parameters())


def problem_hp():
    from uservec.training.task_selection import hyperparameter_grid

    return hyperparameter_grid("adapter", SETTINGS, profile=True)[0]


def test_residual_fit_starts_from_the_wide_parts_validation_score():
    """Epoch 0 of a residual fit is the wide part alone, so its best is at least the wide's."""
    from conftest import make_dataset as build

    dataset, users, labels, classes = labelled_data(build, 90)
    data = wide_data(dataset, vocabulary_bags(dataset), users, users, labels, classes, "mean")
    assert data.allowed is not None and data.allowed.min() == item_columns(dataset)[0]
    holdout = holdout_split(data.codes, SETTINGS.valid_fraction)
    offsets, tune_wide, _ = residual_logits(data, holdout)
    assert offsets.tune.shape == (holdout.train.size, 2)
    assert offsets.refit.shape == (users.size, 2)
    wide_score = rule_score(data.codes[holdout.test], rule_columns(offsets.valid, tune_wide.shift),
                            2, SETTINGS.select_metric)
    fit = fit_profile_task("adapter", random_pretrained(), dataset, users, labels, classes,
                           SETTINGS, MAX_LEN, residual=lambda _: offsets)
    assert best_validation(fit) >= round(wide_score, 5) - 1e-9


def test_served_kind_is_chosen_without_the_test_labels():
    """Flipping every test-fold label changes the test scores, never the choice."""
    from conftest import make_dataset as build

    dataset, users, labels, classes = labelled_data(build, 90)
    folds = _folds(users.size)
    flipped = labels.copy()
    flipped[folds[0].test] = np.where(labels[folds[0].test] == "a", "b", "a")
    outcomes = []
    for current in (labels, flipped):
        context = _context(dataset)
        split = ProfileSplit("kind", None, ProfileLabels(users, current, classes), {})
        deep = [fit_profile_task("adapter", context.pristine, dataset,
                                 *(lambda f: (f.train_users, f.train_labels, f.classes))(
                                     fold_data(split.labels, folds[0], 0)),
                                 SETTINGS, MAX_LEN)]
        results, kinds = evaluate_served("kind", split, folds, context, deep)
        outcomes.append((kinds, results["served"].per_fold("accuracy")))
    assert outcomes[0][0] == outcomes[1][0]
    assert outcomes[0][1] != outcomes[1][1]
