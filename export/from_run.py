"""``uservec export RUN_DIR``: rebuild a finished run's final task models and write its bundle.

A run directory holds ``config.json`` (the resolved experiment config), ``pretrain/best.pt`` (the
backbone) and ``tasks/<task>/final.pt`` (one final model per task: patches + head, trained on every
labelled user with the tuned hyperparameters). Fold models are evaluation only and never exported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from uservec.contract.manifest import BundleManifest
from uservec.export import ExportError
from uservec.export.bundle import TaskExport, write_bundle
from uservec.export.calibration import calibration_items
from uservec.training.checkpoint import load_checkpoint, load_encoder
from uservec.training.config import ExperimentConfig, read_run_config
from uservec.training.data.dataset import PreparedDataset
from uservec.training.data.prepare import load_run_dataset
from uservec.training.evaluation.plan import pretraining_view
from uservec.training.fused import ProfileTask, RecommendTask
from uservec.training.model import (
    TASK_KEY,
    ClassificationHead,
    ItemScoringHead,
    NextItNet,
    TaskSpec,
)

log = logging.getLogger(__name__)

def _patch_name(patch_state: dict[str, torch.Tensor]) -> str | None:
    names = {m.group(1) for key in patch_state if (m := TASK_KEY.match(key))}
    if len(names) > 1:
        raise ExportError(f"final model carries patches of several tasks: {sorted(names)}")
    return next(iter(names), None)


def _attach_patches(encoder: NextItNet, payload: dict[str, Any]) -> str | None:
    """Add the task's patches to the shared backbone and load their trained weights."""
    patch_state = dict(payload.get("patch_state") or {})
    name = _patch_name(patch_state)
    if name is None:
        return None
    spec = TaskSpec(**payload["spec"])
    encoder.add_task(name, spec.bottleneck, spec.placement, spec.own_layer_norms, spec.item_rank)
    try:
        missing, unexpected = encoder.load_state_dict(patch_state, strict=False)
    except RuntimeError as exc:  # shapes that do not fit (e.g. a task of a run with another dim)
        raise ExportError(f"task {payload['task']}: patch weights do not fit the backbone "
                          f"({str(exc).splitlines()[-1].strip()})") from exc
    if unexpected or any((m := TASK_KEY.match(k)) and m.group(1) == name for k in missing):
        raise ExportError(f"task {payload['task']}: patch weights do not fit the backbone")
    return name


def _load_head(head: torch.nn.Module, payload: dict[str, Any]) -> None:
    try:
        head.load_state_dict(payload["head_state"])
    except RuntimeError as exc:
        raise ExportError(f"task {payload['task']}: head weights do not fit its labels or "
                          f"items ({str(exc).splitlines()[-1].strip()})") from exc


def load_task(
    encoder: NextItNet, payload: dict[str, Any], dataset: PreparedDataset
) -> tuple[ProfileTask | RecommendTask, TaskExport]:
    """One final task model as a fused-graph head plus the bundle's description of it."""
    name = str(payload["task"])
    patches = _attach_patches(encoder, payload)
    dim = encoder.dim
    if payload["kind"] == "profile":
        labels = tuple(str(label) for label in payload["labels"])
        head = ClassificationHead(dim, len(labels))
        _load_head(head, payload)
        readout = str(payload.get("readout", "last"))  # runs made before readouts read "last"
        prior = payload.get("class_prior")  # runs made before it have none
        return (ProfileTask(head.eval(), patches=patches, readout=readout),
                TaskExport(name, "profile", labels=labels,
                           class_prior=None if prior is None else tuple(map(float, prior)),
                           prior_power=payload.get("prior_power")))
    keys = tuple(str(k) for k in payload["candidate_keys"])
    item_head = ItemScoringHead(dim, len(keys))
    _load_head(item_head, payload)
    keep = payload["source_keep"].bool()
    target = str(payload["target_domain"])
    ranking = payload["popularity_ranking"].tolist()
    task = TaskExport(
        name, "recommend", domain=target,
        source_domains=tuple(d for d in dataset.domains if d != target),
        item_keys=keys, popularity=tuple(keys[i] for i in ranking),
    )
    readout = str(payload.get("readout", "last"))
    return RecommendTask(item_head.eval(), patches=patches, source_keep=keep, readout=readout), task


def check_same_data(meta: dict[str, Any], view_fingerprint: str, vocab_size: int,
                    run_dir: Path) -> None:
    """Refuse to export when the data read now is not what the encoder was trained on.

    The bundle ships the vocabulary of the dataset prepared *now* from the run's config; if the
    raw files or the config changed since the run, ids would point at the wrong embeddings
    with nothing to show for it. The encoder records the fingerprint of its pretraining view.
    """
    recorded = meta.get("dataset_fingerprint")
    if recorded != view_fingerprint or meta.get("vocab_size") != vocab_size:
        raise ExportError(
            f"{run_dir}: the data prepared now (fingerprint {view_fingerprint}, vocabulary "
            f"{vocab_size}) is not what the encoder was trained on ({recorded}, "
            f"{meta.get('vocab_size')}): the raw data or the run's config changed since; "
            "re-run `uservec run` on it"
        )


def export_from_run(
    run_dir: str | Path, out_dir: str | Path, quantize: bool = False, overwrite: bool = False
) -> BundleManifest:
    """Write the bundle of a finished run; raises ExportError when a check fails."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    encoder_path = run_dir / "pretrain" / "best.pt"
    if not encoder_path.is_file():
        raise ExportError(f"{encoder_path}: no pretrained encoder in this run")
    torch.set_num_threads(1)  # tiny convolutions: torch's thread pool only adds overhead here
    encoder, meta = load_encoder(encoder_path)
    dataset = load_run_dataset(cfg.data, run_dir)
    check_same_data(meta, pretraining_view(cfg, dataset).fingerprint, dataset.vocab.size, run_dir)
    profile: dict[str, ProfileTask] = {}
    recommend: dict[str, RecommendTask] = {}
    exports: list[TaskExport] = []
    for path in sorted((run_dir / "tasks").glob("*/final.pt")):
        payload = load_checkpoint(path)
        if payload.get("encoder_fingerprint", meta["dataset_fingerprint"]) != meta[
                "dataset_fingerprint"]:
            raise ExportError(f"{path}: trained on another encoder than {encoder_path} (its data "
                              "fingerprint differs); re-run the run's tasks")
        head, task = load_task(encoder, payload, dataset)
        exports.append(task)
        if isinstance(head, ProfileTask):
            profile[task.name] = head
        else:
            recommend[task.name] = head
        log.info("loaded final model of task %s (%s)", task.name, task.kind)
    if not exports:
        log.warning("%s has no task models: the bundle serves /embed only", run_dir)
    from uservec.training.fused import FusedUserModel

    fused = FusedUserModel(encoder.eval(), profile, recommend).eval()
    compare = None
    if quantize:
        compare = int8_comparison(run_dir, cfg, dataset, fused, {t.name: t for t in exports})
    manifest = write_bundle(
        out_dir, fused, dataset.vocab, exports,
        {**json.loads((run_dir / "config.json").read_text()), "source_run": str(run_dir)},
        meta["dataset_fingerprint"], cfg.seed, cfg.model.max_len,
        calibration_items(dataset, cfg.model.max_len, cfg.seed), quantize,
        name=cfg.name, overwrite=overwrite, int8_task_metrics=compare,
    )
    return manifest


def int8_comparison(
    run_dir: Path, cfg: ExperimentConfig, dataset: PreparedDataset, fused: Any,
    tasks: dict[str, TaskExport],
) -> Callable[[Path, Path], dict[str, Any]]:
    """fp32 vs int8 on the run's own evaluation data (P1 test, P3 test users, P2 labels)."""
    from uservec.export.task_metrics import compare_on_tasks, evaluator_of_run

    with torch.no_grad():
        vectors = {name: fused.item_vectors(name).float().numpy() for name in fused.recommend_heads}
    return compare_on_tasks(evaluator_of_run(run_dir, cfg, dataset, tasks, vectors))
