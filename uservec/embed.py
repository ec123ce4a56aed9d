"""Bulk embedding: an event file of any size -> a Parquet row per user, from a bundle's ONNX graph.

    uservec embed --bundle bundles/ml-100k --input events.csv.gz --out vectors.parquet --workers 2

The REST API embeds 64 users a request; a team with millions of users wants a file. The design:

1. **Spill by user hash.** The input (CSV, CSV.GZ or Parquet in the generic event format) is read
   in chunks of ``chunk_rows`` rows; each chunk's rows go to one of P spill files (Arrow IPC, lz4)
   chosen by a hash of the user id, so all of a user's rows land in one file wherever they were in
   the input. The input needs no grouping or sorting, and no step holds the whole file.
2. **One partition at a time.** A spill file is read alone, sorted by (user, timestamp, item_id,
   input row) and cut into users. A spill file larger than ``partition_rows`` (a skewed hash, or
   a file larger than P x ``partition_rows``) is split again by other bits of the hash first, so
   memory stays bounded by ``chunk_rows`` and ``partition_rows``, never by the input.
3. **The service's numbers.** Each user's rows go through
   :func:`uservec.contract.events.encode_events`, the rule the service applies to a request's
   events, and batches through :mod:`uservec.contract.sequences`' padding, the service's batch
   encoding; profile heads use the contract's decision rule. Only the latest ``max_len`` rows of a
   user are handed over: the sort above is the contract's order, so the window is the same.
4. **Workers.** With ``workers`` > 1 the partitions are shared out to that many processes through
   a queue; each runs its own onnxruntime session (cores / workers threads) and sends batches of
   finished rows back to the parent, the one writer of the output file (a bounded queue holds
   workers back when the writer lags). Row order in the output is unspecified; each user is one
   row, and values do not depend on the number of workers (a user's batch is fixed by its
   partition, not by the worker that runs it).

The output is written to ``OUT.partial`` and renamed when complete, so a failed run never leaves a
file that looks finished.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import multiprocessing as mp
import os
import queue
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from uservec.contract.decision import Decision, prior_shift
from uservec.contract.events import encode_events
from uservec.contract.manifest import DISABLED_OPTIMIZERS
from uservec.contract.sequences import batch_length, encode_batch
from uservec.contract.verify import load_and_verify
from uservec.contract.vocab import Vocabulary

logger = logging.getLogger(__name__)

USER_VECTOR = "user_vector"
#: spill partitions of the first pass at most (open files at once); later passes split further
MAX_PARTITIONS = 256
#: hash bits used per splitting pass; 64-bit hashes allow 8 passes
BITS_PER_PASS = 8
MAX_DEPTH = 64 // BITS_PER_PASS - 1
#: the columns of a spill file: events normalised, with their input row for a stable order
SPILL_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("domain", pa.string()),
    ("timestamp", pa.int64()), ("row", pa.int64()),
])
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")


class EmbedError(ValueError):
    """The input or an option cannot be embedded; the message names the file, row and problem."""


@dataclass(frozen=True)
class EventColumns:
    """Column names of the event file, as the training ``generic`` format configures them."""

    user: str = "user_id"
    item: str = "item_id"
    timestamp: str = "timestamp"
    #: None: the column ``domain`` when the file has one, else every event has the default domain
    domain: str | None = None


@dataclass(frozen=True)
class EmbedOptions:
    #: also write every profile head's label and probabilities
    heads: bool = False
    #: profile heads to write (as the service's ``attributes``); empty: all of them
    attributes: tuple[str, ...] = ()
    decision: Decision = "as_trained"
    #: user sequences per onnxruntime run (larger batches gain little and leave the CPU caches)
    batch_size: int = 64
    #: processes running the model
    workers: int = 1
    #: onnxruntime intra-op threads per worker; 0: the usable cores divided among the workers
    threads: int = 0
    #: input rows read at once
    chunk_rows: int = 1_000_000
    #: rows of one spill partition held in memory at most (a larger one is split again)
    partition_rows: int = 1_000_000
    #: where spill files go (they total about the input's size); None: the system temp folder
    tmp_dir: Path | None = None
    verify_checksums: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("batch_size", "workers", "chunk_rows", "partition_rows"):
            if getattr(self, name) < 1:
                raise EmbedError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threads < 0:
            raise EmbedError(f"threads must be 0 (automatic) or positive, got {self.threads}")


@dataclass(frozen=True)
class EmbedSummary:
    out: Path
    users: int
    events: int
    partitions: int
    workers: int
    spill_seconds: float
    embed_seconds: float
    #: most input rows one step held in memory (a chunk, or a partition being embedded)
    max_rows_held: int

    @property
    def seconds(self) -> float:
        return self.spill_seconds + self.embed_seconds

    @property
    def users_per_s(self) -> float:
        return self.users / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "users": self.users, "events": self.events,
                "partitions": self.partitions, "workers": self.workers,
                "spill_seconds": self.spill_seconds, "embed_seconds": self.embed_seconds,
                "seconds": self.seconds, "users_per_s": self.users_per_s,
                "max_rows_held": self.max_rows_held}


# --- reading the event file
def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    raise EmbedError(f"{path}: expected a .csv, .csv.gz or .parquet event file")


def _csv_header(path: Path) -> list[str]:
    try:
        with pacsv.open_csv(path, read_options=pacsv.ReadOptions(block_size=1 << 16)) as reader:
            return list(reader.schema.names)
    except (pa.ArrowInvalid, OSError) as exc:
        raise EmbedError(f"{path}: cannot read the CSV header ({exc})") from exc


def _file_columns(path: Path) -> list[str]:
    if _kind(path) == "parquet":
        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except (pa.ArrowInvalid, OSError) as exc:
            raise EmbedError(f"{path}: cannot read Parquet ({exc})") from exc
    return _csv_header(path)


def resolve_columns(path: Path, columns: EventColumns) -> EventColumns:
    """The columns to read: the required ones must exist, ``domain`` is used when present."""
    names = _file_columns(path)
    domain = columns.domain
    if domain is None and "domain" in names:
        domain = "domain"
    wanted = [columns.user, columns.item, columns.timestamp, *([domain] if domain else [])]
    missing = [name for name in wanted if name not in names]
    if missing:
        raise EmbedError(f"{path}: missing column(s) {missing}; the file has columns {names}")
    return EventColumns(columns.user, columns.item, columns.timestamp, domain)


def _raw_batches(path: Path, columns: EventColumns, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``chunk_rows`` rows holding only the event columns."""
    wanted = [c for c in (columns.user, columns.item, columns.timestamp, columns.domain) if c]
    if _kind(path) == "parquet":
        yield from pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=wanted)
        return
    # every column as text: ids keep leading zeros, and timestamps are parsed per chunk below
    # (a type inferred from the first block would refuse a later block written differently)
    convert = pacsv.ConvertOptions(
        column_types=dict.fromkeys(wanted, pa.string()), include_columns=wanted,
        strings_can_be_null=True, null_values=[""],
    )
    # about 64 bytes a row: a block rarely exceeds chunk_rows, and the slicing below makes sure
    read = pacsv.ReadOptions(block_size=max(1 << 14, min(chunk_rows * 64, 1 << 28)))
    with pacsv.open_csv(path, read_options=read, convert_options=convert) as reader:
        for batch in reader:
            for start in range(0, batch.num_rows, chunk_rows):
                yield batch.slice(start, chunk_rows)


def _where(path: Path, first_row: int, index: int) -> str:
    return f"{path}, data row {first_row + index}"


def _no_nulls(values: pa.Array, name: str, path: Path, first_row: int) -> None:
    if values.null_count:
        index = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise EmbedError(f"{_where(path, first_row, index)}: missing value in column {name!r}")


def _id_column(values: pa.Array, name: str, path: Path, first_row: int) -> pa.Array:
    """Ids as strings, as the training loaders read them (integral floats lose their '.0')."""
    _no_nulls(values, name, path, first_row)
    if pa.types.is_floating(values.type):
        as_int = pc.cast(values, pa.int64(), safe=False)
        if pc.all(pc.equal(pc.cast(as_int, values.type), values)).as_py():
            values = as_int
    return pc.cast(values, pa.string())


def _first_failure(values: pa.Array, parsers: Sequence[Callable[[pa.Array], Any]]) -> int | None:
    """Index of the first value every parser refuses; None when each value alone parses (the
    slow path, only to name an error's row)."""
    for index in range(len(values)):
        one = values.slice(index, 1)
        for parse in parsers:
            try:
                parse(one)
                break
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
        else:
            return index
    return None


def _whole_seconds(values: pa.Array, name: str, path: Path, first_row: int) -> pa.Array:
    floats = values.to_numpy(zero_copy_only=False).astype(np.float64)
    fractional = floats != np.floor(floats)
    if fractional.any():
        index = int(np.flatnonzero(fractional)[0])
        raise EmbedError(f"{_where(path, first_row, index)}: timestamp {values[index]} in "
                         f"column {name!r} is not a whole number of seconds")
    return pa.array(floats.astype(np.int64))


def _parse_iso(values: pa.Array) -> pa.Array:
    """ISO-8601 text to unix seconds (floored); text without a zone offset is UTC."""
    try:
        stamps = pc.cast(values, pa.timestamp("ns", tz="UTC"))
    except pa.ArrowInvalid:
        stamps = pc.cast(values, pa.timestamp("ns"))
    nanos = pc.cast(stamps, pa.int64()).to_numpy(zero_copy_only=False)
    return pa.array(np.floor_divide(nanos, 1_000_000_000))


def _timestamps(values: pa.Array, name: str, path: Path, first_row: int) -> pa.Array:
    """(n,) int64 unix seconds from integers, whole floats, date/time types or ISO-8601 text."""
    _no_nulls(values, name, path, first_row)
    kind = values.type
    if pa.types.is_integer(kind):
        return pc.cast(values, pa.int64())
    if pa.types.is_floating(kind):
        return _whole_seconds(values, name, path, first_row)
    if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
        nanos = pc.cast(pc.cast(values, pa.timestamp("ns", tz=getattr(kind, "tz", None))),
                        pa.int64()).to_numpy(zero_copy_only=False)
        return pa.array(np.floor_divide(nanos, 1_000_000_000))
    text = pc.cast(values, pa.string())
    for numeric in (pa.int64(), pa.float64()):
        try:
            parsed = pc.cast(text, numeric)
        except pa.ArrowInvalid:
            continue
        return parsed if numeric == pa.int64() else _whole_seconds(parsed, name, path, first_row)
    try:
        return _parse_iso(text)
    except pa.ArrowInvalid as exc:
        number = functools.partial(pc.cast, target_type=pa.float64())
        index = _first_failure(text, [number, _parse_iso])
        if index is None:
            raise EmbedError(f"{path}, data rows {first_row}-{first_row + len(text) - 1}: column "
                             f"{name!r} mixes unix seconds and ISO-8601 timestamps") from exc
        raise EmbedError(f"{_where(path, first_row, index)}: unparsable timestamp "
                         f"{text[index].as_py()!r} in column {name!r} (expected unix seconds "
                         "or ISO-8601)") from exc


def _domains(values: pa.Array | None, n: int, name: str | None, path: Path,
             first_row: int) -> pa.Array:
    """Domains as strings; null or empty means the bundle's default domain (as in a request)."""
    if values is None:
        return pa.nulls(n, pa.string())
    text = pc.cast(values, pa.string())
    bad = pc.fill_null(pc.match_substring(text, ":"), False).to_numpy(zero_copy_only=False)
    if bad.any():
        index = int(np.flatnonzero(bad)[0])
        raise EmbedError(f"{_where(path, first_row, index)}: domain {text[index].as_py()!r} in "
                         f"column {name!r} must not contain ':'")
    return text


def normalise(batch: pa.RecordBatch, columns: EventColumns, path: Path,
              first_row: int) -> pa.RecordBatch:
    """One input chunk as a :data:`SPILL_SCHEMA` batch; errors name the data row (1-based)."""
    n = batch.num_rows
    domain = batch.column(columns.domain) if columns.domain else None
    return pa.RecordBatch.from_arrays([
        _id_column(batch.column(columns.user), columns.user, path, first_row),
        _id_column(batch.column(columns.item), columns.item, path, first_row),
        _domains(domain, n, columns.domain, path, first_row),
        _timestamps(batch.column(columns.timestamp), columns.timestamp, path, first_row),
        pa.array(np.arange(first_row - 1, first_row - 1 + n, dtype=np.int64)),
    ], schema=SPILL_SCHEMA)


# --- spilling by user hash
def user_hashes(users: pa.Array) -> np.ndarray:
    """(n,) uint64 hash of each user id: the same in every process and run (unlike ``hash``)."""
    encoded = pc.dictionary_encode(users)
    uniques = encoded.dictionary.to_pylist()
    digests = np.fromiter(
        (int.from_bytes(hashlib.blake2b(u.encode(), digest_size=8).digest(), "little")
         for u in uniques), dtype=np.uint64, count=len(uniques))
    return digests[encoded.indices.to_numpy(zero_copy_only=False)]


def partition_of(hashes: np.ndarray, depth: int, partitions: int) -> np.ndarray:
    """Partition of each hash at splitting pass ``depth`` (each pass reads its own bits)."""
    shifted = hashes >> np.uint64(BITS_PER_PASS * depth)
    return (shifted % np.uint64(partitions)).astype(np.int64)


@dataclass(frozen=True)
class SpillFile:
    path: Path
    rows: int
    depth: int


@dataclass
class _Spill:
    """P Arrow IPC files, written batch by batch; a file is opened when it gets its first row."""

    folder: Path
    partitions: int
    depth: int
    _writers: dict[int, ipc.RecordBatchStreamWriter] = field(default_factory=dict)
    _rows: dict[int, int] = field(default_factory=dict)

    def path(self, part: int) -> Path:
        return self.folder / f"d{self.depth}-p{part:03d}.arrow"

    def write(self, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        parts = partition_of(user_hashes(batch.column("user_id")), self.depth, self.partitions)
        order = np.argsort(parts, kind="stable")
        ordered = batch.take(pa.array(order))
        counts = np.bincount(parts, minlength=self.partitions)
        start = 0
        for part in np.flatnonzero(counts):
            rows = int(counts[part])
            self._writer(int(part)).write_batch(ordered.slice(start, rows))
            self._rows[int(part)] = self._rows.get(int(part), 0) + rows
            start += rows

    def _writer(self, part: int) -> ipc.RecordBatchStreamWriter:
        if part not in self._writers:
            codec = "lz4" if pa.Codec.is_available("lz4") else None
            self._writers[part] = ipc.new_stream(
                str(self.path(part)), SPILL_SCHEMA, options=ipc.IpcWriteOptions(compression=codec)
            )
        return self._writers[part]

    def close(self) -> list[SpillFile]:
        for writer in self._writers.values():
            writer.close()
        return [SpillFile(self.path(part), rows, self.depth)
                for part, rows in sorted(self._rows.items())]


def partition_count(path: Path, workers: int, partition_rows: int) -> int:
    """Spill partitions of the first pass: enough for the estimated rows and to share out.

    Parquet knows its rows; a CSV's are estimated from its size (about 30 bytes an event, 4x that
    compressed). An underestimate costs a second splitting pass, never memory.
    """
    if _kind(path) == "parquet":
        rows = pq.ParquetFile(path).metadata.num_rows
    else:
        compressed = not path.name.lower().endswith(".csv")
        rows = path.stat().st_size * (4 if compressed else 1) // 30
    by_size = -(-rows // max(1, partition_rows // 2))
    by_workers = 4 * workers if workers > 1 else 1
    return int(min(MAX_PARTITIONS, max(1, by_size, by_workers)))


def spill(path: Path, columns: EventColumns, folder: Path, partitions: int, chunk_rows: int,
          progress: bool) -> tuple[list[SpillFile], int, int]:
    """Stream the event file into spill partitions by user hash.

    Returns the files, the events read and the rows of the largest chunk.
    """
    out = _Spill(folder, partitions, depth=0)
    events = largest = 0
    total = pq.ParquetFile(path).metadata.num_rows if _kind(path) == "parquet" else None
    try:
        with tqdm(total=total, unit=" events", unit_scale=True, desc="reading",
                  disable=not progress, leave=False) as bar:
            for raw in _raw_batches(path, columns, chunk_rows):
                out.write(normalise(raw, columns, path, first_row=events + 1))
                events += raw.num_rows
                largest = max(largest, raw.num_rows)
                bar.update(raw.num_rows)
    except pa.ArrowInvalid as exc:  # a malformed CSV line (pyarrow names it)
        raise EmbedError(f"{path}: cannot parse: {exc}") from exc
    finally:
        files = out.close()
    if not events:
        raise EmbedError(f"{path}: no events (the file has a header and no rows)")
    return files, events, largest


def resplit(part: SpillFile, partition_rows: int) -> list[SpillFile]:
    """Split a spill file that is too large by the next bits of the user hash (streamed)."""
    fanout = int(min(MAX_PARTITIONS, max(2, -(-part.rows // max(1, partition_rows // 2)))))
    out = _Spill(part.path.parent / f"{part.path.stem}.split", fanout, part.depth + 1)
    out.folder.mkdir()
    try:
        with ipc.open_stream(str(part.path)) as reader:
            for batch in reader:
                out.write(batch)
    finally:
        files = out.close()
    part.path.unlink()
    return files


# --- the model
@dataclass(frozen=True)
class ProfileOutput:
    """A profile head as bulk embedding writes it: label + probabilities under one decision."""

    name: str
    output: str
    labels: tuple[str, ...]
    #: (C,) added to the logits before the softmax; None under the as-trained rule
    shift: np.ndarray | None


@dataclass(frozen=True, eq=False)
class EmbedModel:
    bundle_version: str
    vocab: Vocabulary
    session: Any  # onnxruntime.InferenceSession
    input_name: str
    max_len: int
    dim: int
    #: the graph's sequence length when it is not dynamic
    fixed_length: int | None
    #: the vocabulary's domains when it has several: what a domain-less event resolves among
    domains: tuple[str, ...]
    heads: tuple[ProfileOutput, ...]

    @property
    def outputs(self) -> list[str]:
        return [USER_VECTOR, *(head.output for head in self.heads)]

    def run(self, sequences: Sequence[np.ndarray]) -> list[np.ndarray]:
        """One onnxruntime pass, padded as the service pads a batch (to its longest sequence)."""
        length = self.fixed_length or batch_length(sequences, self.max_len)
        items = encode_batch(sequences, length)  # (B, L), left-padded
        return list(self.session.run(self.outputs, {self.input_name: items}))


def _profile_outputs(manifest: Any, decision: Decision,
                     attributes: Sequence[str]) -> tuple[ProfileOutput, ...]:
    available = [task.name for task in manifest.tasks if task.kind == "profile"]
    unknown = sorted(set(attributes) - set(available))
    if unknown:
        raise EmbedError(f"unknown profile attributes {unknown}; the bundle has {available}")
    heads = []
    for task in manifest.tasks:
        if task.kind != "profile" or (attributes and task.name not in attributes):
            continue
        shift = None
        if decision == "prior_adjusted":
            if task.class_prior is None or task.prior_power is None:
                raise EmbedError(f"decision 'prior_adjusted' needs head {task.name!r}'s training "
                                 "label prior, and this bundle has none (use 'as_trained')")
            shift = prior_shift(task.class_prior, task.prior_power)
        heads.append(ProfileOutput(task.name, task.output, tuple(task.labels or ()), shift))
    return tuple(heads)


def load_model(bundle: Path, *, heads: bool, decision: Decision, threads: int,
               verify_checksums: bool, attributes: Sequence[str] = ()) -> EmbedModel:
    """The bundle's vocabulary and graph, in an onnxruntime session configured as the service's."""
    import onnxruntime as ort

    manifest = load_and_verify(bundle, smoke=False, checksums=verify_checksums)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        str(bundle / manifest.model.file), sess_options=options,
        providers=["CPUExecutionProvider"], disabled_optimizers=list(DISABLED_OPTIMIZERS),
    )
    shape = session.get_inputs()[0].shape
    vocab = Vocabulary.load(bundle / manifest.vocab_file)
    return EmbedModel(
        bundle_version=manifest.bundle_version,
        vocab=vocab,
        session=session,
        input_name=session.get_inputs()[0].name,
        max_len=manifest.model.max_len,
        dim=manifest.model.dim,
        fixed_length=shape[1] if len(shape) == 2 and isinstance(shape[1], int) else None,
        domains=tuple(vocab.domains()) if len(vocab.domains()) > 1 else (),
        heads=_profile_outputs(manifest, decision, attributes) if heads else (),
    )


def output_schema(model: EmbedModel, decision: Decision) -> pa.Schema:
    """user_id, events_used, vector, then per profile head ``<task>_label``,
    ``<task>_probabilities`` (in the order of the labels listed in the schema's metadata)."""
    fields = [pa.field("user_id", pa.string()), pa.field("events_used", pa.int32()),
              pa.field("vector", pa.list_(pa.float32(), model.dim))]
    for head in model.heads:
        fields += [pa.field(f"{head.name}_label", pa.string()),
                   pa.field(f"{head.name}_probabilities", pa.list_(pa.float32(),
                                                                   len(head.labels)))]
    metadata = {"uservec.bundle_version": model.bundle_version, "uservec.max_len":
                str(model.max_len)}
    if model.heads:
        metadata["uservec.decision"] = decision
        metadata |= {f"uservec.labels.{h.name}": json.dumps(list(h.labels)) for h in model.heads}
    return pa.schema(fields, metadata=metadata)


def _softmax(logits: np.ndarray) -> np.ndarray:
    """(B, C) row-wise softmax in float64, as the service computes a head's probabilities."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


# --- embedding one partition
def _users(table: pa.Table, max_len: int) -> tuple[pa.Table, np.ndarray]:
    """Rows sorted in the contract's order and cut to each user's latest ``max_len``, with the
    (U + 1,) row offsets of the users."""
    order = pc.sort_indices(table, sort_keys=[("user_id", "ascending"), ("timestamp", "ascending"),
                                              ("item_id", "ascending"), ("row", "ascending")])
    table = table.take(order)
    n = table.num_rows
    users = table.column("user_id")
    change = pc.not_equal(users.slice(1), users.slice(0, n - 1)).to_numpy()
    starts = np.flatnonzero(np.concatenate([[True], change]))
    ends = np.append(starts[1:], n)
    counts = ends - starts
    # the encoder reads only the latest max_len events; the sort is the contract's order, so the
    # rows before the window would be dropped by encode_events anyway
    from_end = np.repeat(ends, counts) - np.arange(n)
    kept = table.filter(pa.array(from_end <= max_len))
    offsets = np.concatenate([[0], np.cumsum(np.minimum(counts, max_len))])
    return kept, offsets


def _embed_rows(model: EmbedModel, table: pa.Table, offsets: np.ndarray,
                batch_size: int, schema: pa.Schema) -> pa.RecordBatch:
    """Encode, run and format the users whose rows are ``table`` (offsets: (U + 1,))."""
    items = table.column("item_id").to_pylist()
    domains = table.column("domain").to_pylist()
    stamps = table.column("timestamp").to_pylist()
    sequences = [
        encode_events(items[a:b], domains[a:b], stamps[a:b], model.vocab, model.max_len,
                      model.domains).ids
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    ]
    n_users = len(sequences)
    # batch users of similar length together: a batch is padded only to its longest member
    order = np.argsort([len(seq) for seq in sequences], kind="stable")
    results = [np.zeros((n_users, model.dim), dtype=np.float32)]
    results += [np.zeros((n_users, len(head.labels)), dtype=np.float64) for head in model.heads]
    for start in range(0, n_users, batch_size):
        rows = order[start:start + batch_size]
        for result, values in zip(results, model.run([sequences[r] for r in rows]), strict=True):
            result[rows] = values
    columns: list[pa.Array] = [
        table.column("user_id").take(pa.array(offsets[:-1])).combine_chunks(),
        pa.array(np.diff(offsets).astype(np.int32)),
        pa.FixedSizeListArray.from_arrays(pa.array(results[0].reshape(-1)), model.dim),
    ]
    for head, logits in zip(model.heads, results[1:], strict=True):
        if head.shift is not None:
            logits = logits + head.shift
        probabilities = _softmax(logits)
        labels = np.asarray(head.labels, dtype=object)[np.argmax(probabilities, axis=1)]
        columns += [pa.array(labels.tolist(), pa.string()),
                    pa.FixedSizeListArray.from_arrays(
                        pa.array(probabilities.astype(np.float32).reshape(-1)),
                        len(head.labels))]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@dataclass
class _Held:
    rows: int = 0


def embed_partition(model: EmbedModel, part: SpillFile, options: EmbedOptions,
                    held: _Held) -> Iterator[pa.RecordBatch]:
    """Batches of finished rows for every user of one spill file (split first if too large)."""
    if part.rows > options.partition_rows and part.depth < MAX_DEPTH:
        smaller = resplit(part, options.partition_rows)
        if len(smaller) > 1:  # one user's rows cannot be split: then they are held whole
            for sub in smaller:
                yield from embed_partition(model, sub, options, held)
            return
        part = smaller[0]
    with ipc.open_stream(str(part.path)) as reader:
        table = reader.read_all()
    held.rows = max(held.rows, table.num_rows)
    part.path.unlink()
    kept, offsets = _users(table, model.max_len)
    del table
    schema = output_schema(model, options.decision)
    # a few thousand users at a time: Python lists of their rows stay small
    group = options.batch_size * 16
    for first in range(0, len(offsets) - 1, group):
        last = min(first + group, len(offsets) - 1)
        rows = kept.slice(int(offsets[first]), int(offsets[last] - offsets[first]))
        yield _embed_rows(model, rows, offsets[first:last + 1] - offsets[first],
                          options.batch_size, schema)


# --- running it
def _threads(options: EmbedOptions) -> int:
    if options.threads:
        return options.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 1) // options.workers)


def _worker(bundle: Path, options: EmbedOptions, tasks: Any, results: Any) -> None:
    """A worker process: embed the spill files it takes from ``tasks`` until it takes None."""
    held = _Held()
    try:
        model = load_model(bundle, heads=options.heads, decision=options.decision,
                           threads=_threads(options), verify_checksums=False,
                           attributes=options.attributes)
        for part in iter(tasks.get, None):
            for batch in embed_partition(model, part, options, held):
                results.put(("batch", batch))
        results.put(("done", held.rows))
    except BaseException:  # the parent must hear of any failure, or it would wait forever
        results.put(("error", traceback.format_exc()))


def _run_workers(bundle: Path, options: EmbedOptions, parts: list[SpillFile],
                 write: Callable[[pa.RecordBatch], None]) -> int:
    """Share ``parts`` out to worker processes; the caller's ``write`` stores their batches."""
    context = mp.get_context("spawn")  # onnxruntime's thread pools do not survive a fork
    tasks = context.Queue()
    for part in parts:
        tasks.put(part)
    for _ in range(options.workers):
        tasks.put(None)
    results = context.Queue(maxsize=4 * options.workers)
    processes = [context.Process(target=_worker, daemon=True,
                                 args=(bundle, options, tasks, results))
                 for _ in range(options.workers)]
    for process in processes:
        process.start()
    held, running = 0, len(processes)
    try:
        while running:
            try:
                kind, payload = results.get(timeout=1.0)
            except queue.Empty:
                dead = [p for p in processes if p.exitcode not in (None, 0)]
                if dead:
                    raise EmbedError(f"a worker process died (exit code {dead[0].exitcode}); "
                                     "out of memory? try fewer --workers or a smaller "
                                     "--partition-rows") from None
                continue
            if kind == "batch":
                write(payload)
            elif kind == "done":
                held, running = max(held, payload), running - 1
            else:
                raise EmbedError(f"a worker failed:\n{payload}")
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
    return held


def embed_file(bundle: Path, input_path: Path, out: Path, *, columns: EventColumns | None = None,
               options: EmbedOptions | None = None) -> EmbedSummary:
    """Embed every user of an event file into ``out`` (Parquet); see the module docstring.

    With ``workers`` > 1 the workers are spawned processes, which import the caller's main
    module again: call this from under ``if __name__ == "__main__":`` in a script.
    """
    columns = resolve_columns(Path(input_path), columns or EventColumns())
    options = options or EmbedOptions()
    bundle, input_path, out = Path(bundle), Path(input_path), Path(out)
    model = load_model(bundle, heads=options.heads, decision=options.decision,
                       threads=_threads(options), verify_checksums=options.verify_checksums,
                       attributes=options.attributes)
    if options.heads and not model.heads:
        logger.warning("--heads: bundle %s has no profile heads; writing vectors only", bundle)
    schema = output_schema(model, options.decision)
    partitions = partition_count(input_path, options.workers, options.partition_rows)
    partial = out.with_name(out.name + ".partial")
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="uservec-embed-", dir=options.tmp_dir))
    users = 0
    try:
        start = time.perf_counter()
        parts, events, chunk_held = spill(input_path, columns, work, partitions, options.chunk_rows,
                              options.progress)
        spill_seconds = time.perf_counter() - start
        logger.info("embed: %d events in %d spill partitions (%.1f s)", events, len(parts),
                    spill_seconds)
        start = time.perf_counter()
        with pq.ParquetWriter(partial, schema) as writer, tqdm(
            unit=" users", unit_scale=True, desc="embedding", disable=not options.progress,
        ) as bar:
            def write(batch: pa.RecordBatch) -> None:
                nonlocal users
                writer.write_batch(batch)
                users += batch.num_rows
                bar.update(batch.num_rows)

            if options.workers == 1:
                held = _Held()
                for part in parts:
                    for batch in embed_partition(model, part, options, held):
                        write(batch)
                partition_held = held.rows
            else:
                partition_held = _run_workers(bundle, options, parts, write)
        embed_seconds = time.perf_counter() - start
        partial.replace(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        partial.unlink(missing_ok=True)
    summary = EmbedSummary(out, users, events, len(parts), options.workers, spill_seconds,
                           embed_seconds, max(chunk_held, partition_held))
    logger.info("embed: %d users in %.1f s (%.0f users/s) -> %s", users, summary.seconds,
                summary.users_per_s, out)
    return summary
