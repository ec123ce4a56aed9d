"""Write one versioned, checksummed bundle (layout: :mod:`uservec.manifest`) from a fused model.

Order of work: export ONNX -> parity vs torch (raises) -> step graph and its streamed parity
(raises) -> item vectors, FAISS indexes, popularity ->
optional int8 twin with its report -> vocabulary -> checksums + manifest -> verify the result ->
publish. Everything is written into a temporary sibling directory that is renamed into place only
after it verifies, so a crash or a failed check never leaves a half-written bundle at ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from uservec.contract.fingerprint import code_version, sha256_file, sha256_json
from uservec.contract.manifest import (
    MANIFEST_NAME,
    SCHEMA_VERSION,
    BundleManifest,
    ModelSpec,
    TaskSpec,
    sealed,
)
from uservec.contract.verify import catalogue_problem, load_and_verify
from uservec.contract.vocab import Vocabulary
from uservec.export import ExportError
from uservec.export.graphs import node_count, write_graphs
from uservec.export.indexes import IndexKind, build_index, write_index
from uservec.export.onnx_export import OPSET, export_onnx
from uservec.export.parity import check_parity, open_session, session_outputs
from uservec.export.publish import check_replaceable, fsync_tree, publish, set_permissions
from uservec.export.quantize import Method, quantize_within_gate
from uservec.export.step_graph import STEP_FILE, check_step_parity, export_step
from uservec.training.fused import FusedUserModel, profile_output, query_output

log = logging.getLogger(__name__)

MODEL_FILE, INT8_FILE, VOCAB_FILE = "model.onnx", "model.int8.onnx", "vocab.json"
NEXT_ITEM_FILE = "next_item.npy"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
#: share of the calibration sequences held out for the parity checks when none are given
HELD_OUT_SHARE = 0.25


@dataclass(frozen=True)
class TaskExport:
    """What the bundle records about one head of the fused model (the head itself is in the model).

    Profile: ``labels`` in logit order. Recommend: target ``domain``, the ``source_domains`` its
    input keeps, ``item_keys`` in the head's item-vector row order, and ``popularity`` (item keys,
    most popular first) for users with no usable history.
    """

    name: str
    kind: Literal["profile", "recommend"]
    labels: tuple[str, ...] | None = None
    domain: str | None = None
    source_domains: tuple[str, ...] | None = None
    item_keys: tuple[str, ...] | None = None
    popularity: tuple[str, ...] | None = None
    #: profile: training label frequencies and class-weight power (TaskSpec.class_prior)
    class_prior: tuple[float, ...] | None = None
    prior_power: float | None = None
    #: "deep", "wide" or "wide+deep": what the head's output serves (TaskSpec.served_kind)
    served_kind: str = "deep"


def _check_tasks(fused: FusedUserModel, tasks: Sequence[TaskExport]) -> None:
    """Every head has exactly one task description, with metadata that fits it."""
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ExportError(f"task names must be unique, got {names}")
    for task in tasks:
        if not _SAFE_NAME.match(task.name):
            raise ExportError(
                f"task name {task.name!r} must match {_SAFE_NAME.pattern} (file names)"
            )
    expected = {("profile", n) for n in fused.profile_heads} | {
        ("recommend", n) for n in fused.recommend_heads
    }
    given = {(t.kind, t.name) for t in tasks}
    if given != expected:
        raise ExportError(
            f"tasks {sorted(given)} do not match the model's heads {sorted(expected)}"
        )
    for task in tasks:
        if task.kind == "profile" and not task.labels:
            raise ExportError(f"profile task {task.name!r} needs its class labels")
        if task.kind == "recommend":
            if not task.domain:
                raise ExportError(f"recommend task {task.name!r} needs a domain")
            problem = catalogue_problem(task.domain, task.item_keys or (), task.popularity)
            if problem:
                raise ExportError(f"recommend task {task.name!r}: {problem}")


def _check_shapes(
    tasks: Sequence[TaskExport],
    outputs: Mapping[str, np.ndarray],
    vectors: Mapping[str, np.ndarray],
) -> None:
    """Label counts match logit widths; item keys match item-vector rows and query widths."""
    for task in tasks:
        if task.kind == "profile":
            width = outputs[profile_output(task.name)].shape[1]
            if width != len(task.labels or ()):
                raise ExportError(
                    f"profile task {task.name!r}: {len(task.labels or ())} labels, head has {width}"
                )
        else:
            rows, width = vectors[task.name].shape
            query_width = outputs[query_output(task.name)].shape[1]
            if rows != len(task.item_keys or ()) or width != query_width:
                raise ExportError(
                    f"recommend task {task.name!r}: {len(task.item_keys or ())} item keys and "
                    f"query width {query_width}, item vectors have shape {(rows, width)}"
                )


def _split_held_out(items: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibration rows and held-out parity rows (disjoint when there are at least two rows)."""
    if items.shape[0] < 2:
        return items, items
    order = np.random.default_rng(seed).permutation(items.shape[0])
    n_held = max(1, round(items.shape[0] * HELD_OUT_SHARE))
    return items[order[n_held:]], items[order[:n_held]]


def _write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")


def _plain_json(obj: Any) -> Any:
    """JSON-safe copy (tuples -> lists, other objects -> str): the manifest must serialise."""
    return json.loads(json.dumps(obj, default=str))


def bundle_version(name: str, created: datetime, files: Mapping[str, str]) -> str:
    """``<name>-<UTC timestamp>-<content hash>``: sortable by time, distinct by content."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "uservec"
    return f"{safe}-{created:%Y%m%dT%H%M%SZ}-{sha256_json(dict(files))[:8]}"


@dataclass(frozen=True, eq=False)
class _Contents:
    """What a bundle is written from, besides the model itself."""

    vocab: Vocabulary
    tasks: Sequence[TaskExport]
    config: dict[str, Any]
    data_fingerprint: str
    seed: int
    max_len: int
    #: (N, max_len) int8 calibration rows and index sample queries
    calibration: np.ndarray
    #: (M, max_len) parity rows, disjoint from the calibration rows where possible
    held_out: np.ndarray
    quantize: bool
    quantize_method: Method
    index_kind: IndexKind
    name: str
    int8_task_metrics: Callable[[Path, Path], dict[str, Any]] | None
    #: (V, D + 1) pretrained next-item output layer, bias last (None: not exported)
    next_item: np.ndarray | None = None


def write_bundle(
    out_dir: str | Path,
    fused_model: FusedUserModel,
    vocab: Vocabulary,
    tasks: Sequence[TaskExport],
    config: Mapping[str, Any],
    data_fingerprint: str,
    seed: int,
    max_len: int,
    calibration_items: np.ndarray,
    quantize: bool = False,
    *,
    parity_items: np.ndarray | None = None,
    quantize_method: Method = "static",
    index_kind: IndexKind = "auto",
    name: str | None = None,
    overwrite: bool = False,
    int8_task_metrics: Callable[[Path, Path], dict[str, Any]] | None = None,
    private: bool = False,
    next_item: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> BundleManifest:
    """Export, check and write a bundle to ``out_dir`` atomically; return its manifest.

    ``calibration_items`` (N, max_len) are real encoded sequences: they calibrate int8, serve as
    sample queries for approximate indexes and, unless ``parity_items`` is given, a held-out quarter
    of them is the parity batch. Raises :class:`export.ExportError` (or its ``ParityError``) when a
    check fails, or :class:`~uservec.manifest.BundleError` when the written bundle fails the
    loading side's own checks (``load_and_verify``); nothing is written to ``out_dir`` then.
    ``int8_task_metrics(fp32_path, int8_path)`` measures both graphs on the run's real evaluation
    data (see :mod:`export.task_metrics`); its report joins the int8 parity report in the
    manifest. The bundle is world-readable (files 0644, folders 0755: a server running as
    another user, e.g. the image's uid 10001, reads a mounted bundle) unless ``private``
    (0600 / 0700).
    """
    out_dir = Path(out_dir).resolve()
    check_replaceable(out_dir, overwrite)
    fused_model = fused_model.eval()
    _check_tasks(fused_model, tasks)
    calibration, held_out = _calibration_rows(calibration_items, parity_items, max_len,
                                              vocab.size, seed)
    contents = _Contents(vocab, tasks, dict(config), data_fingerprint, seed, max_len,
                         calibration, held_out, quantize, quantize_method, index_kind,
                         name or str(config.get("name") or "uservec"), int8_task_metrics,
                         _next_item_rows(next_item, vocab.size))
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        manifest = _write_contents(tmp, fused_model, contents)
        set_permissions(tmp, private)
        load_and_verify(tmp, smoke=True)
        fsync_tree(tmp)
        publish(tmp, out_dir, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("wrote bundle %s to %s", manifest.bundle_version, out_dir)
    return manifest


def _next_item_rows(
    head: tuple[torch.Tensor, torch.Tensor] | None, vocab_size: int
) -> np.ndarray | None:
    """The next-item layer (weight (V, D), bias (V,)) as (V, D + 1) rows, checked."""
    if head is None:
        return None
    weight, bias = (t.detach().float().cpu().numpy() for t in head)
    if weight.ndim != 2 or weight.shape[0] != vocab_size or bias.shape != (vocab_size,):
        raise ExportError(f"next-item head {weight.shape}/{bias.shape} does not fit the "
                          f"vocabulary of {vocab_size} ids")
    return np.concatenate([weight, bias[:, None]], axis=1).astype(np.float32)


def _calibration_rows(
    calibration_items: np.ndarray, parity_items: np.ndarray | None, max_len: int,
    vocab_size: int, seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Checked (calibration rows, held-out parity rows)."""
    items = np.asarray(calibration_items, dtype=np.int64)
    if items.ndim != 2 or items.shape[0] == 0 or items.shape[1] != max_len:
        raise ExportError(f"calibration_items must be (N > 0, {max_len}), got {items.shape}")
    if items.min() < 0 or items.max() >= vocab_size:
        raise ExportError(f"calibration_items hold ids outside [0, {vocab_size})")
    if parity_items is None:
        return _split_held_out(items, seed)
    return items, np.asarray(parity_items, dtype=np.int64)


def _write_contents(root: Path, fused: FusedUserModel, job: _Contents) -> BundleManifest:
    model_path = root / MODEL_FILE
    inputs, outputs = export_onnx(fused, model_path, job.vocab.size, job.max_len)
    with torch.no_grad():
        vectors = {
            n: fused.item_vectors(n).detach().float().numpy().astype(np.float32)
            for n in fused.recommend_heads
        }
    sample = session_outputs(open_session(model_path), job.calibration)
    _check_shapes(job.tasks, sample, vectors)
    parity: dict[str, Any] = {"fp32": check_parity(fused, model_path, job.held_out, vectors)}
    step = None
    if fused.needs_bag:
        # a step state carries the encoder, not the whole item bag a wide part reads: appends
        # re-encode with the full graph instead (docs/service.md#user-state)
        parity["step"] = {"skipped": "wide parts read the whole item bag"}
    else:
        step = export_step(fused, root / STEP_FILE, job.max_len)
        parity["step"] = check_step_parity(fused, root / STEP_FILE, step, job.held_out)
    specs = [
        _profile_spec(task) if task.kind == "profile" else _write_recommend_files(
            root, task, vectors[task.name], sample, job.index_kind, job.seed)
        for task in job.tasks
    ]
    int8_file, int8_method = None, None
    if job.quantize:
        parity["int8"] = _int8_twin(model_path, root / INT8_FILE, job, vectors)
        if parity["int8"]["accepted"]:
            int8_file, int8_method = INT8_FILE, job.quantize_method
    graphs, parity["graphs"] = write_graphs(root, MODEL_FILE, int8_file, job.held_out)
    job.vocab.save(root / VOCAB_FILE)
    next_item_file = None
    if job.next_item is not None:
        (root / "items").mkdir(exist_ok=True)
        next_item_file = NEXT_ITEM_FILE
        np.save(root / next_item_file, job.next_item)
    model = ModelSpec(
        file=MODEL_FILE, int8_file=int8_file, int8_method=int8_method, opset=OPSET,
        max_len=job.max_len, dim=int(sample[fused.output_names[0]].shape[1]),
        inputs=inputs, outputs=outputs, step=step, graphs=graphs, nodes=node_count(model_path),
        next_item_file=next_item_file,
    )
    return _seal(root, job, model, specs, parity)


def _profile_spec(task: TaskExport) -> TaskSpec:
    return TaskSpec(
        name=task.name,
        kind="profile",
        output=profile_output(task.name),
        labels=list(task.labels or ()),
        class_prior=None if task.class_prior is None else list(task.class_prior),
        prior_power=task.prior_power,
        served_kind=task.served_kind,
    )


def _int8_twin(model_path: Path, int8_path: Path, job: _Contents,
               vectors: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """Quantize within the agreement gate; a twin that fails it is deleted, never shipped."""
    report = quantize_within_gate(model_path, int8_path, job.quantize_method, job.calibration,
                                  job.held_out, vectors)
    if job.int8_task_metrics is not None:
        report["task_metrics"] = job.int8_task_metrics(model_path, int8_path)
    if not report["accepted"]:
        log.warning("int8 model fails the accuracy thresholds (%s); not shipped", report)
        int8_path.unlink()
    return report


def _seal(root: Path, job: _Contents, model: ModelSpec, specs: list[TaskSpec],
          parity: dict[str, Any]) -> BundleManifest:
    """Checksum every file written so far and write the sealed manifest beside them."""
    files = {
        path.relative_to(root).as_posix(): sha256_file(path)
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }
    created = datetime.now(UTC).replace(microsecond=0)
    manifest = sealed(BundleManifest(
        schema_version=SCHEMA_VERSION,
        bundle_version=bundle_version(job.name, created, files),
        created_at=created.isoformat(),
        code_version=code_version(),
        data_fingerprint=job.data_fingerprint,
        seed=job.seed,
        config=_plain_json(job.config),
        model=model,
        tasks=specs,
        vocab_file=VOCAB_FILE,
        parity=_plain_json(parity),
        files=files,
    ))
    (root / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2), encoding="utf-8")
    return manifest


def _write_recommend_files(
    root: Path,
    task: TaskExport,
    vectors: np.ndarray,
    sample: Mapping[str, np.ndarray],
    index_kind: IndexKind,
    seed: int,
) -> TaskSpec:
    """items/<task>.npy + .json, index/<task>.faiss and popularity/<task>.json for one head."""
    for folder in ("items", "index", "popularity"):
        (root / folder).mkdir(exist_ok=True)
    items_file, keys_file = f"items/{task.name}.npy", f"items/{task.name}.json"
    index_file, popularity_file = f"index/{task.name}.faiss", f"popularity/{task.name}.json"
    np.save(root / items_file, vectors)
    _write_json(root / keys_file, list(task.item_keys or ()))
    index, info = build_index(
        vectors, kind=index_kind, queries=sample[query_output(task.name)], seed=seed
    )
    write_index(index, root / index_file)
    _write_json(root / popularity_file, list(task.popularity or ()))
    return TaskSpec(
        name=task.name,
        kind="recommend",
        output=query_output(task.name),
        domain=task.domain,
        source_domains=list(task.source_domains) if task.source_domains is not None else None,
        items_file=items_file,
        item_keys_file=keys_file,
        index_file=index_file,
        index_kind=info["kind"],
        index_params=info["params"],
        index_recall_at_10=info["recall_at_10"],
        popularity_file=popularity_file,
        served_kind=task.served_kind,
    )
