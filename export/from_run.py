"""``uservec export RUN_DIR``: rebuild a finished run's final task models and write its bundle.

Reads the run folder alone (:class:`~uservec.training.run_dir.RunDir`): ``config.json`` (the
resolved experiment config), ``prepared/`` (the dataset with its vocabulary and splits),
``pretrain/best.pt`` (the backbone) and ``tasks/<task>/final.pt`` (one final model per task:
patches + head, trained on every labelled user with the tuned hyperparameters,
:class:`~uservec.training.task_artifact.TaskArtifact`). No raw data and no particular current
directory is needed, so a run folder exports the same bundle wherever it is. Fold models are
evaluation only and never exported.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from uservec.contract.manifest import BundleManifest
from uservec.export import ExportError
from uservec.export.bundle import TaskExport, write_bundle
from uservec.export.calibration import calibration_items
from uservec.training.checkpoint import load_encoder, vocab_mismatch
from uservec.training.config import ExperimentConfig
from uservec.training.data.dataset import PreparedDataset
from uservec.training.evaluation.plan import EvaluationPlan
from uservec.training.fused import FusedUserModel, ProfileTask, RecommendTask
from uservec.training.model import (
    TASK_KEY,
    ClassificationHead,
    ItemScoringHead,
    NextItNet,
)
from uservec.training.run_dir import RunDir
from uservec.training.task_artifact import (
    ArtifactError,
    ProfileOutputs,
    RecommendOutputs,
    TaskArtifact,
)
from uservec.training.wide.modules import ProfileWidePart, RankingWidePart

log = logging.getLogger(__name__)


def _patch_name(patch_state: dict[str, torch.Tensor]) -> str | None:
    names = {m.group(1) for key in patch_state if (m := TASK_KEY.match(key))}
    if len(names) > 1:
        raise ExportError(f"final model carries patches of several tasks: {sorted(names)}")
    return next(iter(names), None)


def _attach_patches(encoder: NextItNet, artifact: TaskArtifact) -> str | None:
    """Add the task's patches to the shared backbone and load their trained weights."""
    name = _patch_name(artifact.patch_state)
    if name is None:
        return None
    if artifact.spec is None:
        raise ExportError(f"task {artifact.task}: patch weights without a patch spec")
    spec = artifact.spec
    encoder.add_task(name, spec.bottleneck, spec.placement, spec.own_layer_norms, spec.item_rank)
    try:
        missing, unexpected = encoder.load_state_dict(artifact.patch_state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit (e.g. a task of a run with another dim)
        raise ExportError(f"task {artifact.task}: patch weights do not fit the backbone "
                          f"({str(exc).splitlines()[-1].strip()})") from exc
    if unexpected or any((m := TASK_KEY.match(k)) and m.group(1) == name for k in missing):
        raise ExportError(f"task {artifact.task}: patch weights do not fit the backbone")
    return name


def _load_head(head: torch.nn.Module, artifact: TaskArtifact) -> None:
    try:
        head.load_state_dict(artifact.head_state)
    except RuntimeError as exc:
        raise ExportError(f"task {artifact.task}: head weights do not fit its labels or "
                          f"items ({str(exc).splitlines()[-1].strip()})") from exc


def load_task(
    encoder: NextItNet, artifact: TaskArtifact, domains: tuple[str, ...]
) -> tuple[ProfileTask | RecommendTask, TaskExport]:
    """One final task model as a fused-graph head plus the bundle's description of it.

    ``domains``: every domain of the run's data (a recommend task's input keeps all but its
    target).
    """
    patches = _attach_patches(encoder, artifact)
    outputs, dim = artifact.outputs, encoder.dim
    if isinstance(outputs, ProfileOutputs):
        head = ClassificationHead(dim, len(outputs.labels))
        _load_head(head, artifact)
        wide = None if outputs.wide is None else ProfileWidePart.from_payload(outputs.wide).eval()
        kind = outputs.served_kind if wide is not None else "deep"
        return (ProfileTask(head.eval(), patches=patches, readout=artifact.readout, wide=wide,
                            served_kind=kind),
                TaskExport(artifact.task, "profile", labels=outputs.labels,
                           class_prior=outputs.class_prior, prior_power=outputs.prior_power,
                           served_kind=kind))
    return _load_recommend(artifact, outputs, patches, dim, domains)


def _load_recommend(
    artifact: TaskArtifact, outputs: RecommendOutputs, patches: str | None, dim: int,
    domains: tuple[str, ...],
) -> tuple[RecommendTask, TaskExport]:
    if artifact.source_keep is None:
        raise ExportError(f"task {artifact.task}: a cross-domain model without its source filter")
    keys = outputs.candidate_keys
    item_head = ItemScoringHead(dim, len(keys))
    _load_head(item_head, artifact)
    target = outputs.target_domain
    ranking = outputs.popularity_ranking.tolist()
    wide = None if outputs.wide is None else RankingWidePart.from_payload(outputs.wide).eval()
    kind = outputs.served_kind if wide is not None else "deep"
    task = TaskExport(
        artifact.task, "recommend", domain=target,
        source_domains=tuple(d for d in domains if d != target),
        item_keys=keys, popularity=tuple(keys[i] for i in ranking), served_kind=kind,
    )
    head = RecommendTask(item_head.eval(), patches=patches, source_keep=artifact.source_keep,
                         readout=artifact.readout, wide=wide, served_kind=kind)
    return head, task


def check_same_data(meta: dict[str, Any], dataset: PreparedDataset, view_fingerprint: str,
                    run_dir: Path) -> None:
    """Refuse to export when the run's prepared data is not what the encoder was trained on.

    The bundle ships the run's vocabulary: if it is not the one the encoder's embedding rows
    are indexed by (a run folder assembled from parts of different runs), every id would point
    at the wrong embedding with nothing to show for it. The encoder records the vocabulary's
    size and hash and the fingerprint of its pretraining view.
    """
    recorded = meta.get("dataset_fingerprint")
    problem = vocab_mismatch(meta, dataset.vocab)
    if recorded != view_fingerprint:
        problem = f"data fingerprint {view_fingerprint}, the encoder's is {recorded}"
    if problem is not None:
        raise ExportError(
            f"{run_dir}: the prepared data in the run folder is not what the encoder was "
            f"trained on ({problem}); re-run `uservec run` on its config"
        )


def load_artifacts(run: RunDir, fingerprint: str) -> list[TaskArtifact]:
    """Every task model of the run, each checked to sit on the run's encoder."""
    artifacts = []
    for path in run.task_artifact_paths():
        try:
            artifact = TaskArtifact.load(path)
        except ArtifactError as exc:
            raise ExportError(str(exc)) from exc
        if artifact.encoder_fingerprint not in ("", fingerprint):
            raise ExportError(f"{path}: trained on another encoder than {run.encoder_path} (its "
                              "data fingerprint differs); re-run the run's tasks")
        artifacts.append(artifact)
    return artifacts


def export_from_run(
    run_dir: str | Path, out_dir: str | Path, quantize: bool = False, overwrite: bool = False,
    private: bool = False,
) -> BundleManifest:
    """Write the bundle of a finished run; raises ExportError when a check fails.

    The bundle is world-readable unless ``private`` (:func:`export.bundle.write_bundle`).
    """
    run = RunDir(run_dir)
    cfg = run.read_config()
    encoder_path = run.require_encoder()
    torch.set_num_threads(1)  # tiny convolutions: torch's thread pool only adds overhead here
    encoder, meta = load_encoder(encoder_path)
    dataset = run.load_dataset()
    plan = run.plan(cfg, dataset)
    check_same_data(meta, dataset, plan.pretraining_view(dataset).fingerprint, run.root)
    profile: dict[str, ProfileTask] = {}
    recommend: dict[str, RecommendTask] = {}
    exports: list[TaskExport] = []
    for artifact in load_artifacts(run, meta["dataset_fingerprint"]):
        head, task = load_task(encoder, artifact, dataset.domains)
        exports.append(task)
        if isinstance(head, ProfileTask):
            profile[task.name] = head
        else:
            recommend[task.name] = head
        log.info("loaded final model of task %s (%s)", task.name, task.kind)
    if not exports:
        log.warning("%s has no task models: the bundle serves /embed only", run.root)
    fused = FusedUserModel(encoder.eval(), profile, recommend).eval()
    compare = None
    if quantize:
        compare = int8_comparison(run, cfg, dataset, plan, fused, {t.name: t for t in exports})
    return write_bundle(
        out_dir, fused, dataset.vocab, exports,
        {**run.config_payload(), "source_run": str(run.root.resolve())},
        meta["dataset_fingerprint"], cfg.seed, cfg.model.max_len,
        calibration_items(dataset, cfg.model.max_len, cfg.seed), quantize,
        name=cfg.name, overwrite=overwrite, int8_task_metrics=compare, private=private,
        next_item=_next_item_head(encoder_path),
    )


def _next_item_head(checkpoint: Path) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The pretrained next-item output layer (weight, bias), served for in-domain
    recommendations; None when the checkpoint has none."""
    from uservec.training.checkpoint import load_checkpoint

    head = load_checkpoint(checkpoint).get("head", {})
    if "output.weight" not in head or "output.bias" not in head:
        return None
    return head["output.weight"], head["output.bias"]


def int8_comparison(
    run: RunDir, cfg: ExperimentConfig, dataset: PreparedDataset, plan: EvaluationPlan,
    fused: FusedUserModel, tasks: dict[str, TaskExport],
) -> Callable[[Path, Path], dict[str, Any]]:
    """fp32 vs int8 on the run's own evaluation data (P1 test, P3 test users, P2 labels)."""
    from uservec.export.task_metrics import compare_on_tasks, evaluator_of_run

    with torch.no_grad():
        vectors = {name: fused.item_vectors(name).float().numpy() for name in fused.recommend_heads}
    return compare_on_tasks(evaluator_of_run(run, cfg, dataset, plan, tasks, vectors))
