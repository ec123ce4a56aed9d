"""P3 cross-domain cold start on a pretrained encoder: a new target-item table per target domain.

The network reads only the user's source-domain events (:func:`source_keep`) and scores the
candidate target items with an :class:`~training.model.ItemScoringHead`, trained with softmax
cross-entropy averaged over each training user's target items (:func:`multi_positive_loss`).
With ``item_init = "probe"`` the table starts from ridge on the frozen user vectors
(:func:`probe_item_head`). Tuned on the P3 validation round, always refitted on every training
user (the candidates change)::

    split = cross_domain_split(dataset, "books")
    fit = fit_cross_domain_task("adapter", pretrained, split, settings, 50)
    result = evaluate_cross_domain(cross_domain_scorer(fit, 50), split)
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from uservec.contract.ids import NUM_RESERVED, split_item_key
from uservec.contract.sequences import encode_batch
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.cross_domain_split import CrossDomainSplit
from uservec.training.evaluation.ranking import K
from uservec.training.evaluation.ranking_eval import evaluate_cross_domain
from uservec.training.linear_probes import probe_item_head
from uservec.training.linear_probes import (  # re-exported: the probes read P3 inputs from here
    vector_ridge_solver as vector_ridge_solver,
)
from uservec.training.model import ItemScoringHead
from uservec.training.task_loop import batched_forward
from uservec.training.task_network import Pretrained, count_parameters
from uservec.training.task_selection import (
    HeadInit,
    TaskFit,
    TaskProblem,
    fit_once,
    fit_task,
    make_task_fit,
)
from uservec.training.task_settings import AdaptSettings, Hyperparameters

logger = logging.getLogger(__name__)

@dataclass(frozen=True, eq=False)
class ResidualScores:
    """Fixed scores (a wide part's, as logits) a residual item head is trained on top of.

    ``tune``: out-of-fold scores of the validation round's training users; ``valid``: the
    validation users' scores from a fit on those; ``refit``: out-of-fold scores of every
    training user.
    """

    tune: np.ndarray | None
    valid: np.ndarray | None
    refit: np.ndarray | None


def source_keep(dataset: PreparedDataset, target_domain: str) -> torch.Tensor:
    """(V,) bool: True for vocabulary ids of source-domain items (reserved ids and T: False).

    UNK is dropped too: it may stand for a rare target item, which a cold-start input must not see.
    """
    keep = torch.zeros(dataset.vocab.size, dtype=torch.bool)
    for pos, key in enumerate(dataset.vocab.keys):
        keep[NUM_RESERVED + pos] = split_item_key(key)[0] != target_domain
    return keep


def source_inputs(split: CrossDomainSplit, users: np.ndarray, max_len: int) -> torch.Tensor:
    """(N, max_len) the users' source-domain events (latest ``max_len``), left-padded."""
    return torch.from_numpy(encode_batch(split.source_sequences(np.asarray(users)), max_len))


def _positives(split: CrossDomainSplit, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """CSR (offsets (N + 1,), candidate positions (P,)) of each user's training target items."""
    lists = [split.target_items(int(u)) for u in users]
    counts = np.array([x.size for x in lists], dtype=np.int64)
    if np.any(counts == 0):
        raise ValueError("every training user needs at least one target item among the candidates")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return torch.from_numpy(offsets), torch.from_numpy(np.concatenate(lists).astype(np.int64))


def multi_positive_loss(
    logits: torch.Tensor, rows: torch.Tensor, offsets: torch.Tensor, positives: torch.Tensor
) -> torch.Tensor:
    """Mean over users of the mean softmax cross-entropy of each of the user's target items.

    logits (B, C) over candidates; user ``rows[i]``'s positives are
    ``positives[offsets[r]:offsets[r + 1]]``.
    """
    log_prob = F.log_softmax(logits, dim=1)  # (B, C)
    counts = offsets[rows + 1] - offsets[rows]  # (B,)
    batch_row = torch.repeat_interleave(torch.arange(rows.numel()), counts)  # (P_b,)
    first = torch.repeat_interleave(offsets[rows], counts)  # (P_b,)
    within = torch.arange(batch_row.numel()) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts
    )
    items = positives[first + within]  # (P_b,)
    picked = log_prob[batch_row, items] / counts[batch_row].to(log_prob.dtype)
    return -picked.sum() / rows.numel()


def item_head(
    candidate_ids: np.ndarray,
    popularity: np.ndarray,
    dim: int,
    pretrained: Pretrained,
    init: str,
) -> ItemScoringHead:
    """A candidate-item head, starting as the popularity ranking or from pretrained vectors.

    "popularity": zero item vectors and bias log(1 + training users per candidate), so training
    starts from the popularity baseline and learns per-user deviations (a random table starts
    far below it). "pretrained": in-vocabulary candidates take their rows of the pretrained
    next-item output layer (the rest keep popularity).
    """
    head = ItemScoringHead(dim, int(candidate_ids.size))
    with torch.no_grad():
        head.item_embedding.zero_()
        head.item_bias.copy_(torch.log1p(torch.as_tensor(popularity, dtype=torch.float32)))
        if init == "pretrained" and pretrained.output_weight is not None:
            ids = torch.from_numpy(np.asarray(candidate_ids, dtype=np.int64))
            known = ids >= NUM_RESERVED
            head.item_embedding[known] = pretrained.output_weight[ids[known]].float()
            if pretrained.output_bias is not None:
                head.item_bias[known] = pretrained.output_bias[ids[known]].float()
    return head


def cross_domain_problem(
    split: CrossDomainSplit,
    pretrained: Pretrained,
    settings: AdaptSettings,
    max_len: int,
    keep: torch.Tensor,
    validate_on_test_users: bool,
    k: int = K,
    offset: np.ndarray | None = None,
    valid_offset: np.ndarray | None = None,
) -> TaskProblem:
    """Fit on ``split.train_users``' target items; validate (NDCG@10) on ``split.test_users``.

    Used with ``split.validation`` for tuning (its test users are the P3 validation users) and
    with the split itself (``validate_on_test_users=False``) for the refit. With ``offset``
    (train users, C) the head is a residual on those fixed scores (``valid_offset`` for the
    validation users) and starts at zero, so the untrained model is the fixed ranking.
    """
    inputs = source_inputs(split, split.train_users, max_len)
    offsets, positives = _positives(split, split.train_users)
    candidate_ids = split.candidate_vocab_ids
    dim = pretrained.encoder.dim
    fixed = None if offset is None else torch.from_numpy(offset.astype(np.float32))

    def loss_fn(logits: torch.Tensor, rows: torch.Tensor, _: Hyperparameters) -> torch.Tensor:
        if fixed is not None:
            logits = logits + fixed[rows]
        return multi_positive_loss(logits, rows, offsets, positives)

    def make_head(from_pretrained: bool) -> nn.Module:
        if fixed is not None:
            head = ItemScoringHead(dim, int(candidate_ids.size))
            with torch.no_grad():
                head.item_embedding.zero_()
            return head
        init = settings.item_init if from_pretrained else "popularity"
        return item_head(candidate_ids, split.popularity, dim, pretrained, init)

    validate = None
    if validate_on_test_users:
        valid_users = split.test_users
        valid_x = source_inputs(split, valid_users, max_len)
        row_of = {int(u): row for row, u in enumerate(valid_users)}

        valid_fixed = 0.0 if valid_offset is None else valid_offset

        def validate(vectors: Callable[[torch.Tensor], torch.Tensor], head: nn.Module,
                     _: Hyperparameters) -> float:
            with torch.no_grad():
                scores = head(vectors(valid_x)).numpy() + valid_fixed

            def score_fn(users: np.ndarray) -> np.ndarray:
                return scores[[row_of[int(u)] for u in users]]

            return float(evaluate_cross_domain(score_fn, split, k)[f"ndcg@{k}"]["mean"])

    init_head: HeadInit | None = None
    if settings.item_init == "probe" and fixed is None:
        targets = split.target_matrix(split.train_users)  # rows = ``inputs``' users

        def probe(head: nn.Module, vectors: torch.Tensor, _: Hyperparameters) -> None:
            lam = probe_item_head(head, vectors.double().numpy(), targets, split.popularity, k)
            logger.debug("P3 %s probe head: lambda %g", split.target_domain, lam)

        init_head = fit_once(probe, reads=lambda _: None)

    return TaskProblem(inputs, make_head, loss_fn, validate, keep=keep, validate_untrained=True,
                       init_head=init_head)


def fit_cross_domain_task(
    method: str,
    pretrained: Pretrained,
    split: CrossDomainSplit,
    settings: AdaptSettings,
    max_len: int,
    seed: int = 0,
    task_name: str = "task",
    shared: bool = False,
    k: int = K,
    residual: ResidualScores | None = None,
) -> TaskFit:
    """Tune (NDCG@k) on the P3 validation round, refit on every training user of ``split``.

    The refitted head scores ``split.candidates``; nothing here reads a test user's target events.
    With ``residual`` the head learns on top of those fixed (wide) scores.
    """
    if split.validation is None:
        raise ValueError("the P3 split has no validation round to tune on")
    # what the fits below read: every user's source events and the training users' targets
    split.check_no_leak(split.training_view())
    keep = source_keep(split.dataset, split.target_domain)
    fixed = residual if residual is not None else ResidualScores(None, None, None)
    tune = cross_domain_problem(split.validation, pretrained, settings, max_len, keep, True, k,
                                fixed.tune, fixed.valid)
    refit = cross_domain_problem(split, pretrained, settings, max_len, keep, False, k,
                                 fixed.refit)
    # always refit: the tuned head scores the validation round's candidates, not the test's
    setup, hp, tuning, seconds = fit_task(method, pretrained, tune, refit, settings, task_name,
                                          seed, profile=False, shared=shared, always_refit=True)
    logger.info("P3 %s %s: %s, %d trainable, %.1fs", task_name, method, hp,
                count_parameters(setup.params), seconds)
    return make_task_fit(method, setup, hp, tuning, seconds, split.candidate_keys, task_name, split)


def cross_domain_scorer(fit: TaskFit, max_len: int) -> Callable[[np.ndarray], np.ndarray]:
    """P3 ``score_fn(users) -> (len(users), C)`` of a fitted cross-domain task."""
    if fit.split is None:
        raise ValueError("not a cross-domain fit")
    split = fit.split

    def score(users: np.ndarray) -> np.ndarray:
        fit.network.eval()
        return batched_forward(fit.network, source_inputs(split, users, max_len)).numpy()

    return score
