"""Bundle manifest: the schema every bundle reader checks before trusting a bundle.

A bundle is one directory written by ``export/`` and read by ``service/`` (and by
``uservec bundle verify``)::

    BUNDLE/
      manifest.json           this schema
      model.onnx              fused multi-task graph: input ``items`` (B, L) int64, left-padded,
                              both axes dynamic -> ``user_vector`` (B, D), then per profile task
                              ``profile.<task>`` logits (B, C), then per recommendation task
                              ``query.<task>`` (B, D'); one run serves every head
      model.step.onnx         optional step graph: (state, one new event) -> (new state, the same
                              outputs), for per-user state updated event by event (StepSpec)
      model.int8.onnx         optional int8 twin of model.onnx (same signature, ``int8_method``)
      graphs/<output>.onnx    per-output subgraph of model.onnx (``model.graphs``), and its int8
                              twin graphs/<output>.int8.onnx: what one endpoint needs, no more
      vocab.json              :class:`uservec.vocab.Vocabulary`
      next_item.npy           optional pretrained next-item head (V, D + 1): in-domain /recommend
      items/<task>.npy        recommendation head: target item vectors (N, D') float32
      items/<task>.json       recommendation head: the N item keys in row order
      index/<task>.faiss      recommendation head: FAISS index over items/<task>.npy
      popularity/<task>.json  recommendation head: item keys, most popular first (cold start)

Scores of a recommendation head are ``query @ item_vectors.T`` (inner product: what the index
searches). ``parity`` holds the export-time checks: ``fp32`` (onnxruntime vs torch: per-output max
abs diff, top-k / argmax mismatches) and, with int8, ``int8`` (vs fp32: max diffs, top-10 overlap,
argmax agreement, user-vector cosine, measured speed-up, ``fp32_blocks`` kept unquantized,
``accepted``).

Readers refuse a bundle whose ``schema_version`` is not in ``SUPPORTED_SCHEMA_VERSIONS`` and one
whose files, or whose manifest itself, do not match the recorded sha256 (see :func:`verify_files`);
``export.verify.load_and_verify`` adds consistency and smoke-inference checks on top.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from uservec.contract.fingerprint import sha256_file, sha256_json

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: frozenset[int] = frozenset({1})
MANIFEST_NAME = "manifest.json"
#: onnxruntime graph optimizers a bundle's model runs without (pass as ``disabled_optimizers``).
#: SkipLayerNormFusion merges each residual Add + LayerNorm; in the int8 (QDQ) graph of a bundle
#: with task patches the fused kernel took 43% of the run and left int8 at 1.2x of fp32; without
#: it int8 runs at 1.9-2.0x (AMD EPYC, AVX-512 VNNI). fp32 is unaffected.
#: docs/int8.md#skiplayernormalization-fusion-is-off
DISABLED_OPTIMIZERS: tuple[str, ...] = ("SkipLayerNormFusion",)


class BundleError(Exception):
    """A bundle is missing, incompatible, or does not match its manifest."""


def _inside_bundle(path: str) -> str:
    """A manifest path must stay inside the bundle: relative, no '..' (nor a Windows drive)."""
    pure = PurePosixPath(path)
    if not path or pure.is_absolute() or ".." in pure.parts or "\\" in path or ":" in path:
        raise ValueError(f"{path!r} is not a path inside the bundle")
    return path


#: a file path relative to the bundle folder (a manifest must not point outside it)
BundlePath = Annotated[str, AfterValidator(_inside_bundle)]


class TensorSpec(BaseModel):
    """Name, element type and shape (``None`` = dynamic axis) of a graph input or output."""

    model_config = ConfigDict(frozen=True)
    name: str
    dtype: str
    shape: list[int | str | None]


class GraphSpec(BaseModel):
    """A subgraph of ``model.file`` that computes only ``outputs`` (same input, same values).

    The service runs the smallest graph that holds what an endpoint returns: ``/embed`` needs the
    user vector alone, not every task's encoder pass.
    """

    model_config = ConfigDict(frozen=True)
    name: str
    file: BundlePath
    outputs: list[str]
    int8_file: BundlePath | None = None
    nodes: int = Field(description="node count: the loader's cost estimate of a run")


class StepSpec(BaseModel):
    """The step graph: (state (B, S) float32, item (B,) int64) -> (next_state (B, S), outputs).

    Outputs after ``next_state`` are the fused graph's, in its order. A zero state is the empty
    history; ``receptive_field`` is how many of the latest events the newest position reads.
    """

    model_config = ConfigDict(frozen=True)
    file: BundlePath
    state_size: int = Field(gt=0)
    receptive_field: int = Field(gt=0)
    max_len: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]


class ModelSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    file: BundlePath
    int8_file: BundlePath | None = None
    int8_method: str | None = Field(None, description="static | dynamic (int8_file's quantization)")
    opset: int
    max_len: int
    dim: int
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    # left out of the file when empty, so bundles written before it keep their digest
    graphs: list[GraphSpec] = Field(
        default_factory=list, exclude_if=lambda v: not v,
        description="per-output subgraphs of file (graphs/<output>.onnx); none: file serves all",
    )
    nodes: int | None = Field(None, exclude_if=lambda v: v is None,
                              description="node count of file (with graphs)")


    # left out of the file when absent, so bundles written before it keep their digest
    next_item_file: BundlePath | None = Field(
        None, exclude_if=lambda v: v is None,
        description="the pretrained next-item head as item vectors (V, D + 1) float32, row = "
        "vocabulary id, last column the bias: scores = [user_vector, 1] @ rows.T",
    )
    step: StepSpec | None = Field(
        None, exclude_if=lambda v: v is None,
        description="the step graph for per-event user state (docs/service.md#user-state)",
    )


class TaskSpec(BaseModel):
    """One head of the fused graph."""

    model_config = ConfigDict(frozen=True)
    name: str
    kind: Literal["profile", "recommend"]
    output: str = Field(description="graph output holding this head's logits or query vectors")
    labels: list[str] | None = Field(None, description="profile: class labels in logit order")
    # The two prior fields are left out of the file (and of manifest_digest) when absent, so
    # bundles written before them keep their digest.
    class_prior: list[float] | None = Field(
        None, exclude_if=lambda v: v is None,
        description="profile: label frequencies of the users the head was trained on, in logit "
        "order; with prior_power it gives the prior-adjusted decision",
    )
    prior_power: float | None = Field(
        None, exclude_if=lambda v: v is None,
        description="profile: the class-weight power the head was trained with (weights "
        "prior ** -power); logits + power * log(class_prior) rank like the unweighted posterior",
    )
    # left out of the file when "deep" (all a bundle written before wide parts can hold), so
    # those bundles keep their digest
    served_kind: Literal["deep", "wide", "wide+deep"] = Field(
        "deep", exclude_if=lambda v: v == "deep",
        description="what the head's output serves: the network head on the user vector "
        "(deep), a linear model on the item bag of every event sent (wide; the graph's ``bag`` "
        "input), or their sum (wide+deep); chosen on validation users at training time")
    domain: str | None = Field(None, description="recommend: the target domain")
    source_domains: list[str] | None = Field(None, description="domains the head reads")
    items_file: BundlePath | None = None
    item_keys_file: BundlePath | None = None
    index_file: BundlePath | None = None
    index_kind: str | None = None
    index_params: dict[str, Any] | None = Field(None, description="e.g. IVF nlist, nprobe")
    index_recall_at_10: float | None = Field(None, description="vs exact search, at build time")
    popularity_file: BundlePath | None = None


class BundleManifest(BaseModel):
    model_config = ConfigDict(frozen=True)
    schema_version: int
    bundle_version: str
    created_at: str
    code_version: str
    data_fingerprint: str
    seed: int
    config: dict[str, Any]
    model: ModelSpec
    tasks: list[TaskSpec]
    vocab_file: BundlePath = "vocab.json"
    parity: dict[str, Any] = Field(default_factory=dict)
    files: dict[BundlePath, str] = Field(description="relative path -> sha256 of every other file")
    manifest_sha256: str | None = Field(
        None,
        description="sha256 of this manifest's content without this field (manifest_digest); "
        "absent only in bundles written before it existed",
    )


def manifest_digest(manifest: BundleManifest) -> str:
    """sha256 of the manifest's content, ``manifest_sha256`` left out.

    ``files`` cannot hold the checksum of the file that holds it, so the manifest carries its own:
    without it a label renamed or reordered, or a task pointed at another output, after export
    would load and answer with the wrong names. The digest is over the content as the file holds
    it (``model_dump_json``: an infinite parity diff is written as null), in canonical JSON, so
    re-indenting the file does not change it.
    """
    return sha256_json(json.loads(manifest.model_dump_json(exclude={"manifest_sha256"})))


def sealed(manifest: BundleManifest) -> BundleManifest:
    """The manifest with its ``manifest_sha256`` set (what the bundle writer saves)."""
    return manifest.model_copy(update={"manifest_sha256": manifest_digest(manifest)})


def read_manifest(bundle_dir: str | Path) -> BundleManifest:
    """Parse and version-check ``manifest.json``; raises :class:`BundleError` with the reason."""
    path = Path(bundle_dir) / MANIFEST_NAME
    if not path.is_file():
        raise BundleError(f"{path}: manifest not found (is {bundle_dir} a uservec bundle?)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not valid JSON ({exc})") from exc
    version = raw.get("schema_version") if isinstance(raw, dict) else None
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{path}: bundle schema version {version!r} is not supported; this uservec reads "
            f"versions {sorted(SUPPORTED_SCHEMA_VERSIONS)}. Re-export the bundle with this version."
        )
    try:
        return BundleManifest.model_validate(raw)
    except ValueError as exc:
        raise BundleError(f"{path}: manifest does not match the schema: {exc}") from exc


def verify_files(bundle_dir: str | Path, manifest: BundleManifest) -> None:
    """Check the manifest's own digest, then that every file it lists has its recorded sha256."""
    root = Path(bundle_dir)
    if manifest.manifest_sha256 is not None and manifest.manifest_sha256 != manifest_digest(
        manifest
    ):
        raise BundleError(
            f"{root / MANIFEST_NAME}: content does not match its manifest_sha256: the manifest "
            "was edited after export (re-export the bundle rather than editing it)"
        )
    for rel, expected in sorted(manifest.files.items()):
        path = root / rel
        if not path.is_file():
            raise BundleError(f"{path}: listed in the manifest but missing")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{path}: sha256 mismatch (manifest {expected[:12]}…, file {actual[:12]}…): "
                "the file is truncated, corrupt or was modified after export"
            )
