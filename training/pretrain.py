"""Self-supervised next-item pretraining of the NextItNet encoder
(docs/protocols.md#p1-next-item-prediction).

Trains on every user's events except the last two, early-stops on P1 validation NDCG@k, keeps the
best model in ``OUT/best.pt`` and the latest state in ``OUT/last.pt`` (resumable bitwise).

    result = pretrain(dataset, cfg.model, cfg.pretrain, cfg.eval, Path("runs/ml100k"), seed=0)
    encoder, meta = load_encoder(result.checkpoint)
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from uservec.contract.fingerprint import code_version
from uservec.contract.ids import PAD_ID
from uservec.training.batching import (
    NextItemWindows,
    SetExamples,
    SetWindows,
    shuffled_batches,
)
from uservec.training.checkpoint import (
    CheckpointError,
    build_encoder,
    load_checkpoint,
    load_encoder,
    resume_mismatches,
    save_checkpoint,
    vocab_hash,
)
from uservec.training.config import EvalConfig, ModelConfig, PretrainConfig
from uservec.training.corpus_pretrain import (
    AuxHeads,
    PretrainCorpus,
    batch_loss,
    pretraining_examples,
)
from uservec.training.data.dataset import PreparedDataset
from uservec.training.data.time_order import resolve_objective, time_order
from uservec.training.device import autocast, resolve_device
from uservec.training.distributed import (
    all_sum,
    barrier,
    current_world,
    rank_device,
    shard,
    sync_gradients,
)
from uservec.training.evaluation.next_item import evaluate_next_item
from uservec.training.item_init import svd_item_init
from uservec.training.model import NextItemHead, NextItNet
from uservec.training.run_dir import ENCODER_FILE, RESUME_FILE

__all__ = ["PretrainResult", "load_encoder", "pretrain", "svd_item_init"]

logger = logging.getLogger(__name__)

BEST, LAST = ENCODER_FILE, RESUME_FILE


@dataclass
class PretrainResult:
    """Outcome of a pretraining run; ``encoder``/``head`` hold the restored best model."""

    checkpoint: Path
    best_epoch: int
    val_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    seconds: float
    num_params: int
    #: epochs | early_stopping | max_seconds
    stop_reason: str
    encoder: NextItNet = field(repr=False)
    head: NextItemHead = field(repr=False)
    #: the objective trained and why (``pretrain.objective``; "auto" resolved)
    objective: dict[str, str] = field(default_factory=dict)


@dataclass
class _Progress:
    """Everything besides the tensors that a resumed run must restore."""

    epoch: int = 0
    best_score: float = -math.inf
    best_epoch: int = 0
    best_metrics: dict[str, Any] = field(default_factory=dict)
    bad_epochs: int = 0
    stopped_early: bool = False
    seconds: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)


def pretrain(
    dataset: PreparedDataset,
    model_cfg: ModelConfig,
    pretrain_cfg: PretrainConfig,
    eval_cfg: EvalConfig,
    out_dir: Path,
    seed: int,
    resume: bool = True,
    corpus: PretrainCorpus | None = None,
) -> PretrainResult:
    """Pretrain, early-stop on validation NDCG@k, restore the best epoch (see module docstring).

    With ``corpus`` another population's users join the (set-objective) windows, and its labels
    train auxiliary heads (:mod:`training.corpus_pretrain`); P1 still evaluates ``dataset``.
    """
    with torch_threads(pretrain_cfg.num_threads):
        return _pretrain(dataset, model_cfg, pretrain_cfg, eval_cfg, Path(out_dir), seed, resume,
                         corpus)


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run the block on ``count`` torch intra-op threads (0 = leave torch's default), then restore.

    Training here is many small ops: on cores shared with other jobs, torch's default of one
    thread per core oversubscribes them and spin-waits (``pretrain.num_threads``).
    """
    before = torch.get_num_threads()
    if count > 0:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass(eq=False)
class _Trainer:
    """The model, its optimizer and random streams, and the early-stopping progress."""

    model: NextItNet
    head: NextItemHead
    optimizer: torch.optim.Optimizer
    shuffle_rng: torch.Generator
    negatives_rng: torch.Generator
    #: what makes a checkpoint traceable (and a resume checkable)
    meta: dict[str, Any]
    #: auxiliary heads on corpus labels (an empty module without them)
    aux: AuxHeads
    #: per auxiliary task: (corpus users,) class codes, -1 unlabelled
    aux_codes: dict[str, torch.Tensor] = field(default_factory=dict)
    aux_weight: float = 0.0
    progress: _Progress = field(default_factory=_Progress)

    def payload(self, epoch: int, val: dict[str, Any]) -> dict[str, Any]:
        """A checkpoint of the state after ``epoch``."""
        return {
            **self.meta,
            "model": self.model.state_dict(),
            "head": self.head.state_dict(),
            "aux": self.aux.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {
                "torch": torch.get_rng_state(),
                "shuffle": self.shuffle_rng.get_state(),
                "negatives": self.negatives_rng.get_state(),
            },
            "epoch": epoch,
            "val_metrics": val,
            "progress": dataclasses.asdict(self.progress),
        }


def _new_trainer(
    dataset: PreparedDataset, model_cfg: ModelConfig, pretrain_cfg: PretrainConfig,
    eval_cfg: EvalConfig, seed: int, corpus: PretrainCorpus | None = None,
) -> _Trainer:
    """A freshly initialised model under ``seed`` (the order of random draws is fixed)."""
    torch.manual_seed(seed)
    model = build_encoder(model_cfg, dataset.vocab.size)
    if pretrain_cfg.item_init == "svd":
        extra = None if corpus is None else corpus.vocab_bags(dataset.vocab.size)
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(
                svd_item_init(dataset, model_cfg.dim, seed, extra)))
    head = NextItemHead(model_cfg.dim, dataset.vocab.size)
    aux = AuxHeads(model_cfg.dim, () if corpus is None else corpus.aux)
    params = [*model.parameters(), *head.parameters(), *aux.parameters()]
    optimizer = torch.optim.Adam(params, lr=pretrain_cfg.lr, weight_decay=pretrain_cfg.weight_decay)
    meta = {
        "config": {
            "model": dataclasses.asdict(model_cfg),
            "pretrain": dataclasses.asdict(pretrain_cfg),
            "eval": dataclasses.asdict(eval_cfg),
        },
        "seed": seed,
        "dataset_name": dataset.name,
        "dataset_fingerprint": dataset.fingerprint,
        "vocab_size": dataset.vocab.size,
        "vocab_sha256": vocab_hash(dataset.vocab),
        "code_version": code_version(),
    }
    if corpus is not None:
        meta["corpus"] = corpus.summary
    codes = {} if corpus is None else {t.name: torch.from_numpy(t.codes) for t in corpus.aux}
    return _Trainer(model, head, optimizer, torch.Generator().manual_seed(seed),
                    torch.Generator().manual_seed(seed + 1), meta, aux, codes,
                    0.0 if corpus is None else corpus.aux_weight)


def _resume(trainer: _Trainer, path: Path) -> None:
    """Continue bitwise where ``path`` (the last checkpoint of the same run) stopped."""
    payload = load_checkpoint(path)
    problems = resume_mismatches(payload, trainer.meta)
    if problems:
        raise CheckpointError(
            f"{path} belongs to a different run and cannot be resumed: " + "; ".join(problems)
            + ". Use another output folder, or resume=False to start over."
        )
    if payload.get("code_version") != trainer.meta["code_version"]:
        logger.warning("resuming a checkpoint written by code %s with code %s",
                       payload.get("code_version"), trainer.meta["code_version"])
    trainer.model.load_state_dict(payload["model"])
    trainer.head.load_state_dict(payload["head"])
    trainer.aux.load_state_dict(payload.get("aux", {}))
    trainer.optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["rng"]["torch"])
    trainer.shuffle_rng.set_state(payload["rng"]["shuffle"])
    trainer.negatives_rng.set_state(payload["rng"]["negatives"])
    trainer.progress = _Progress(**payload["progress"])
    logger.info("resuming %s after epoch %d", path, trainer.progress.epoch)


def _epoch(
    trainer: _Trainer, epoch: int, windows: NextItemWindows | SetWindows,
    dataset: PreparedDataset,
    model_cfg: ModelConfig, pretrain_cfg: PretrainConfig, eval_cfg: EvalConfig, out_dir: Path,
) -> None:
    """Train one epoch, validate, update the progress and write the checkpoints."""
    progress, metric = trainer.progress, f"ndcg@{eval_cfg.k}"
    epoch_start = time.perf_counter()
    examples: NextItemWindows | SetExamples = windows.draw(np.random.default_rng(
        [trainer.meta["seed"], epoch])) if isinstance(windows, SetWindows) else windows
    loss = _train_epoch(trainer, examples, pretrain_cfg, epoch)
    train_seconds = time.perf_counter() - epoch_start
    val = evaluate_next_item(trainer.model, trainer.head, dataset, "valid", eval_cfg.k,
                             eval_cfg.batch_size, model_cfg.max_len)
    epoch_seconds = time.perf_counter() - epoch_start
    progress.epoch = epoch
    progress.seconds += epoch_seconds
    progress.history.append({
        "epoch": epoch, "loss": loss, "val": val, "seconds": epoch_seconds,
        "sequences_per_s": len(windows) / max(train_seconds, 1e-9),
    })
    improved = val[metric] > progress.best_score
    if improved:
        progress.best_score, progress.best_epoch = float(val[metric]), epoch
        progress.best_metrics, progress.bad_epochs = dict(val), 0
    else:
        progress.bad_epochs += 1
        progress.stopped_early = progress.bad_epochs >= pretrain_cfg.patience
    logger.info(
        "epoch %d/%d loss %.4f val hr@%d %.4f %s %.4f%s (%.1fs)",
        epoch, pretrain_cfg.epochs, loss, eval_cfg.k, val[f"hr@{eval_cfg.k}"], metric,
        val[metric], " *" if improved else "", epoch_seconds,
    )
    if not current_world().is_main:
        return  # rank 0 writes the checkpoints; the other ranks hold the same state
    payload = trainer.payload(epoch, val)
    if improved:
        save_checkpoint(out_dir / BEST, payload)
    save_checkpoint(out_dir / LAST, payload)


def _pretrain(
    dataset: PreparedDataset,
    model_cfg: ModelConfig,
    pretrain_cfg: PretrainConfig,
    eval_cfg: EvalConfig,
    out_dir: Path,
    seed: int,
    resume: bool,
    corpus: PretrainCorpus | None = None,
) -> PretrainResult:
    out_dir.mkdir(parents=True, exist_ok=True)
    objective, reason = resolve_objective(pretrain_cfg.objective, time_order(dataset))
    if corpus is not None and objective != "set":
        raise ValueError("pretraining on a corpus needs pretrain.objective = 'set' (a corpus "
                         f"is read as sets of items), got {pretrain_cfg.objective!r}")
    windows = pretraining_examples(dataset, pretrain_cfg.window or model_cfg.max_len,
                                   pretrain_cfg, objective, corpus)
    if len(windows) == 0:
        raise ValueError(f"{dataset.name}: no user has a training event to predict (need >= 4)")
    logger.info("pretraining objective %s (%s)", objective, reason)
    trainer = _new_trainer(dataset, model_cfg, pretrain_cfg, eval_cfg, seed, corpus)
    trainer.meta["objective"] = objective
    device = rank_device(resolve_device(pretrain_cfg.device), current_world())
    trainer.model.to(device)  # in place: the optimizer's parameters move with the modules
    trainer.head.to(device)
    trainer.aux.to(device)
    trainer.aux_codes = {name: codes.to(device) for name, codes in trainer.aux_codes.items()}
    if resume and (out_dir / LAST).is_file():
        _resume(trainer, out_dir / LAST)
    num_params = sum(p.numel() for p in [*trainer.model.parameters(),
                                         *trainer.head.parameters()])
    logger.info("pretraining on %s: %d windows, vocab %d, %d parameters", dataset.name,
                len(windows), dataset.vocab.size, num_params)
    progress = trainer.progress
    stop_reason = "early_stopping" if progress.stopped_early else "epochs"
    started = time.perf_counter()
    for epoch in range(progress.epoch + 1, pretrain_cfg.epochs + 1):
        if progress.stopped_early:
            break
        _epoch(trainer, epoch, windows, dataset, model_cfg, pretrain_cfg, eval_cfg, out_dir)
        if progress.stopped_early:
            stop_reason = "early_stopping"
            logger.info("early stopping: no ndcg@%d gain for %d epochs", eval_cfg.k,
                        progress.bad_epochs)
            break
        elapsed = time.perf_counter() - started
        over_time = bool(pretrain_cfg.max_seconds) and elapsed > pretrain_cfg.max_seconds
        # ranks decide together: one rank stopping alone would leave the others waiting
        if all_sum([float(over_time)], current_world())[0] > 0 and epoch < pretrain_cfg.epochs:
            stop_reason = "max_seconds"
            logger.warning("stopping after epoch %d: %.0fs exceeds max_seconds=%.0f",
                           epoch, elapsed, pretrain_cfg.max_seconds)
            break
    barrier(current_world())  # rank 0 has written the best checkpoint
    result = _best_result(trainer, out_dir, num_params, stop_reason)
    result.objective = {"objective": objective, "reason": reason}
    return result


def _best_result(trainer: _Trainer, out_dir: Path, num_params: int,
                 stop_reason: str) -> PretrainResult:
    """Restore the best epoch's model (eval mode) and describe the run."""
    best = load_checkpoint(out_dir / BEST)
    trainer.model.load_state_dict(best["model"])
    trainer.head.load_state_dict(best["head"])
    trainer.model.eval()
    trainer.head.eval()
    progress = trainer.progress
    logger.info("best epoch %d: %s", progress.best_epoch, progress.best_metrics)
    return PretrainResult(
        checkpoint=out_dir / BEST,
        best_epoch=progress.best_epoch,
        val_metrics=progress.best_metrics,
        history=progress.history,
        seconds=progress.seconds,
        num_params=num_params,
        stop_reason=stop_reason,
        encoder=trainer.model,
        head=trainer.head,
    )


def _train_epoch(trainer: _Trainer, windows: NextItemWindows | SetExamples, cfg: PretrainConfig,
                 epoch: int) -> float:
    """One pass over the shuffled windows; returns the mean loss per target."""
    model, head = trainer.model, trainer.head
    for module in (model, head, trainer.aux):
        module.train()
    params = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    total_loss, total_targets, seen = 0.0, 0, 0
    start = time.perf_counter()
    # data-parallel: each rank trains on its slice of the same global batches (distributed.py)
    world, device = current_world(), next(model.parameters()).device
    batches = shuffled_batches(len(windows), cfg.batch_size, trainer.shuffle_rng)
    bar = tqdm(batches, total=math.ceil(len(windows) / cfg.batch_size),
               desc=f"epoch {epoch}", leave=False, mininterval=1.0, disable=not world.is_main)
    for index in bar:
        rows = shard(index, world)
        # (B, L), and (B, L) next items or (B, K) the held-out set of the set objective
        inputs, targets = (t.to(device) for t in windows[rows])
        with autocast(device):
            hidden = model(inputs)  # (B, L, D)
            owners = windows.owners[rows].to(device) if isinstance(windows, SetExamples) else None
            loss = batch_loss(hidden, inputs, targets, owners, head, cfg, trainer.negatives_rng,
                              trainer.aux, trainer.aux_codes, trainer.aux_weight)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        n_targets = int((targets != PAD_ID).sum())
        sync_gradients(params, n_targets, world)
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        trainer.optimizer.step()
        total_loss += loss.item() * n_targets
        total_targets += n_targets
        seen += len(index)
        bar.set_postfix(loss=f"{total_loss / max(total_targets, 1):.3f}",
                        seq_s=f"{seen / (time.perf_counter() - start):.0f}", refresh=False)
    bar.close()
    summed_loss, summed_targets = all_sum([total_loss, float(total_targets)], world)
    return summed_loss / max(summed_targets, 1.0)
