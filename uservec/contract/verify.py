"""Load-time bundle checks shared by ``uservec bundle verify`` and the service (torch-free).

:func:`load_and_verify` refuses, with a :class:`BundleError` naming the reason and the file:
an unsupported schema version; a file the manifest needs but does not checksum; a missing,
truncated or modified file; an incomplete task entry; an unreadable vocabulary; item files that
disagree with each other or break the catalogue rules (:func:`catalogue_problem`); and
(``smoke=True``) a graph whose inputs/outputs differ from the manifest or that does not run.
The service loads bundles through this same function, so what verifies here also serves.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from uservec.contract.bags import graph_feed
from uservec.contract.ids import NUM_RESERVED, PAD_ID, split_item_key
from uservec.contract.manifest import (
    MANIFEST_NAME,
    BundleError,
    BundleManifest,
    TaskSpec,
    read_manifest,
    verify_files,
)
from uservec.contract.vocab import Vocabulary

log = logging.getLogger(__name__)


def required_files(manifest: BundleManifest) -> list[str]:
    """Every file the manifest points at (each must also carry a checksum)."""
    paths = [manifest.model.file, manifest.vocab_file]
    if manifest.model.int8_file:
        paths.append(manifest.model.int8_file)
    for graph in manifest.model.graphs:
        paths += [p for p in (graph.file, graph.int8_file) if p]
    for task in manifest.tasks:
        paths += [
            p
            for p in (task.items_file, task.item_keys_file, task.index_file, task.popularity_file)
            if p
        ]
    return paths


def _check_listed(bundle_dir: Path, manifest: BundleManifest) -> None:
    for rel in required_files(manifest):
        if rel not in manifest.files:
            raise BundleError(f"{bundle_dir / rel}: used by the manifest but has no checksum in it")
    listed = set(manifest.files) | {MANIFEST_NAME}
    extra = [
        p.relative_to(bundle_dir).as_posix()
        for p in bundle_dir.rglob("*")
        if p.is_file() and p.relative_to(bundle_dir).as_posix() not in listed
    ]
    if extra:
        log.warning("%s: files not in the manifest are ignored: %s", bundle_dir, sorted(extra))


def _load_vocab(bundle_dir: Path, manifest: BundleManifest) -> Vocabulary:
    path = bundle_dir / manifest.vocab_file
    try:
        return Vocabulary.load(path)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path}: not a readable vocabulary ({exc})") from exc


def _read_json_list(path: Path) -> list[str]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(value, list) or not all(isinstance(key, str) for key in value):
        raise BundleError(f"{path}: expected a JSON list of item keys (strings)")
    return value


def catalogue_problem(
    domain: str, keys: Sequence[str], popularity: Sequence[str] | None
) -> str | None:
    """What is wrong with a recommend head's item keys and popularity list (None: nothing).

    One rule set for the exporter (before it writes), ``uservec bundle verify`` and the service
    (before it serves): they used to disagree, so a bundle could verify and then be refused.
    """
    if not keys:
        return f"the {domain!r} catalogue is empty"
    if len(set(keys)) != len(keys):
        return "item keys are not unique"
    foreign = [key for key in keys if split_item_key(key)[0] != domain]
    if foreign:
        return f"item keys outside domain {domain!r}, e.g. {foreign[0]!r}"
    if not popularity:
        return f"no popularity list for {domain!r} (the answer for users with no usable history)"
    unknown = sorted(set(popularity) - set(keys))
    if unknown:
        return f"{len(unknown)} popularity key(s) are not among the items, e.g. {unknown[:3]}"
    return None


def _prior_problem(task: TaskSpec) -> str | None:
    """What is wrong with a profile task's class prior (None: nothing, or no prior at all)."""
    if (task.class_prior is None) != (task.prior_power is None):
        return "class_prior and prior_power come together or not at all"
    if task.class_prior is None or task.prior_power is None:
        return None
    prior = np.asarray(task.class_prior, dtype=np.float64)
    if prior.size != len(task.labels or ()):
        return f"class_prior has {prior.size} values for {len(task.labels or ())} labels"
    if not (np.all(np.isfinite(prior)) and np.all(prior >= 0) and abs(prior.sum() - 1) < 1e-6):
        return "class_prior is not a distribution (non-negative, summing to 1)"
    if not (math.isfinite(task.prior_power) and task.prior_power >= 0):
        return f"prior_power {task.prior_power!r} is not a non-negative number"
    return None


def check_task_specs(manifest: BundleManifest) -> None:
    """The manifest's task entries are complete: unique names, labels, every recommend file."""
    seen: set[str] = set()
    for task in manifest.tasks:
        if task.name in seen:
            raise BundleError(f"task name {task.name!r} appears twice in the manifest")
        seen.add(task.name)
        if task.kind == "profile" and not task.labels:
            raise BundleError(f"profile task {task.name!r} has no labels")
        if task.kind == "profile" and (problem := _prior_problem(task)):
            raise BundleError(f"profile task {task.name!r}: {problem}")
        if task.kind == "recommend":
            needed = {"domain": task.domain, "items_file": task.items_file,
                      "item_keys_file": task.item_keys_file, "index_file": task.index_file,
                      "popularity_file": task.popularity_file}
            missing = [name for name, value in needed.items() if not value]
            if missing:
                raise BundleError(f"recommend task {task.name!r} has no {', '.join(missing)}")


def _check_recommend_task(bundle_dir: Path, task: TaskSpec, query_width: int | None) -> None:
    """Item vectors, keys, index and popularity of one head agree with each other."""
    assert task.items_file and task.item_keys_file and task.index_file and task.domain
    vectors_path = bundle_dir / task.items_file
    try:
        vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{vectors_path}: not a readable .npy array ({exc})") from exc
    keys = _read_json_list(bundle_dir / task.item_keys_file)
    if vectors.ndim != 2 or vectors.shape[0] != len(keys):
        raise BundleError(
            f"{vectors_path}: shape {vectors.shape} does not fit the {len(keys)} keys of "
            f"{task.item_keys_file}"
        )
    if query_width is not None and vectors.shape[1] != query_width:
        raise BundleError(
            f"{vectors_path}: item vectors have width {vectors.shape[1]}, the graph's "
            f"{task.output} has {query_width}"
        )
    popularity = (_read_json_list(bundle_dir / task.popularity_file)
                  if task.popularity_file else None)
    problem = catalogue_problem(task.domain, keys, popularity)
    if problem:
        raise BundleError(f"{bundle_dir / task.item_keys_file}: {problem}")
    import faiss  # deferred: only needed when a bundle has indexes

    index_path = bundle_dir / task.index_file
    try:
        index = faiss.read_index(str(index_path))
    except RuntimeError as exc:
        raise BundleError(f"{index_path}: not a readable FAISS index ({exc})") from exc
    if index.ntotal != len(keys) or index.d != vectors.shape[1]:
        raise BundleError(
            f"{index_path}: index holds {index.ntotal} vectors of width {index.d}, "
            f"expected {len(keys)} of width {vectors.shape[1]}"
        )
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise BundleError(f"{index_path}: index metric must be inner product (scores are dots)")


def smoke_items(vocab_size: int, max_len: int) -> list[np.ndarray]:
    """Two small batches: full-length with padding, and a one-step window."""
    real = np.arange(NUM_RESERVED, max(vocab_size, NUM_RESERVED + 1), dtype=np.int64)
    full = np.resize(real, (2, max_len))
    full[1, : max_len // 2] = PAD_ID
    return [full, full[:, -1:]]


def smoke_test(
    bundle_dir: Path, manifest: BundleManifest, model_file: str, vocab_size: int
) -> None:
    """Open the graph with onnxruntime, check its signature, and run it on two tiny batches."""
    import onnxruntime as ort  # deferred: bundle_info and checksum-only checks do not need it

    path = bundle_dir / model_file
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors on bad graphs
        raise BundleError(f"{path}: onnxruntime cannot load the graph ({exc})") from exc
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    expected_in = [t.name for t in manifest.model.inputs]
    expected_out = [t.name for t in manifest.model.outputs]
    if inputs != expected_in or outputs != expected_out:
        raise BundleError(
            f"{path}: graph signature {inputs} -> {outputs} differs from the manifest's "
            f"{expected_in} -> {expected_out}"
        )
    widths = {t.name: t.shape[-1] for t in manifest.model.outputs}
    for batch in smoke_items(vocab_size, manifest.model.max_len):
        try:
            values = session.run(outputs, graph_feed(inputs, batch, vocab_size))
        except Exception as exc:
            raise BundleError(
                f"{path}: smoke inference on shape {batch.shape} failed ({exc})"
            ) from exc
        for name, value in zip(outputs, values, strict=True):
            if value.shape != (batch.shape[0], widths[name]) or not np.all(np.isfinite(value)):
                raise BundleError(
                    f"{path}: output {name!r} has shape {value.shape} or non-finite values on "
                    f"input shape {batch.shape}; expected {(batch.shape[0], widths[name])}"
                )


def load_and_verify(
    bundle_dir: str | Path, smoke: bool = True, checksums: bool = True
) -> BundleManifest:
    """Check a bundle end to end (see the module docstring) and return its manifest.

    ``checksums=False`` skips hashing the files (the service's ``verify_checksums`` setting, for
    very large bundles on trusted storage); every other check still runs.
    """
    root = Path(bundle_dir)
    manifest = read_manifest(root)
    if checksums:
        _check_listed(root, manifest)
        verify_files(root, manifest)
    check_task_specs(manifest)
    vocab = _load_vocab(root, manifest)
    widths = {t.name: t.shape[-1] for t in manifest.model.outputs}
    for task in manifest.tasks:
        if task.output not in widths:
            raise BundleError(
                f"{root}: task {task.name!r} reads output {task.output!r}, not in graph"
            )
        if task.kind == "profile" and widths[task.output] != len(task.labels or ()):
            raise BundleError(
                f"{root}: task {task.name!r} has {len(task.labels or ())} labels, "
                f"its output {task.output!r} has width {widths[task.output]}"
            )
        if task.kind == "recommend":
            width = widths[task.output]
            _check_recommend_task(root, task, width if isinstance(width, int) else None)
    if smoke:
        for model_file in filter(None, (manifest.model.file, manifest.model.int8_file)):
            smoke_test(root, manifest, model_file, vocab.size)
    log.info("bundle %s at %s verified", manifest.bundle_version, root)
    return manifest


def bundle_info(bundle_dir: str | Path, verify: bool = False) -> dict[str, Any]:
    """A JSON-ready summary of a bundle (version, provenance, model, tasks, parity, sizes).

    ``verify``: run :func:`load_and_verify`'s checks (no smoke inference) and say how they went:
    ``verified`` is True, or False with the ``problem``; without ``verify`` it is None (not
    checked), never a False that reads as "this bundle is bad".
    """
    root = Path(bundle_dir)
    verified: bool | None = None
    problem: str | None = None
    if verify:
        try:
            load_and_verify(root, smoke=False)
            verified = True
        except BundleError as exc:
            verified, problem = False, str(exc)
    manifest = read_manifest(root)
    tasks = []
    for task in manifest.tasks:
        entry: dict[str, Any] = {"name": task.name, "kind": task.kind, "output": task.output}
        if task.kind == "profile":
            entry["labels"] = task.labels
            if task.class_prior is not None:
                entry.update(class_prior=task.class_prior, prior_power=task.prior_power)
        else:
            entry.update(
                domain=task.domain,
                source_domains=task.source_domains,
                index_kind=task.index_kind,
                index_params=task.index_params,
                index_recall_at_10=task.index_recall_at_10,
            )
        tasks.append(entry)
    sizes = {rel: (root / rel).stat().st_size for rel in manifest.files if (root / rel).is_file()}
    return {
        "path": str(root),
        "schema_version": manifest.schema_version,
        "bundle_version": manifest.bundle_version,
        "created_at": manifest.created_at,
        "code_version": manifest.code_version,
        "data_fingerprint": manifest.data_fingerprint,
        "seed": manifest.seed,
        "model": {
            "file": manifest.model.file,
            "int8_file": manifest.model.int8_file,
            "int8_method": manifest.model.int8_method,
            "opset": manifest.model.opset,
            "dim": manifest.model.dim,
            "max_len": manifest.model.max_len,
            "inputs": [t.model_dump() for t in manifest.model.inputs],
            "outputs": [t.model_dump() for t in manifest.model.outputs],
        },
        "tasks": tasks,
        "parity": manifest.parity,
        "verified": verified,
        "problem": problem,
        "total_bytes": sum(sizes.values()),
        "file_bytes": sizes,
    }
