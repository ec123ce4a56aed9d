"""Spilling by user hash: every row of a user lands in one partition file, wherever it was in
the input; a partition too large is split again by further bits of the hash."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from uservec.embed.options import EmbedError, EventColumns
from uservec.embed.reading import SPILL_SCHEMA, file_kind, normalise, raw_batches

#: spill partitions of the first pass at most (open files at once); later passes split further
MAX_PARTITIONS = 256
#: hash bits used per splitting pass; 64-bit hashes allow 8 passes
BITS_PER_PASS = 8
MAX_DEPTH = 64 // BITS_PER_PASS - 1
#: the columns of a spill file: events normalised, with their input row for a stable order


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
    if file_kind(path) == "parquet":
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
    total = pq.ParquetFile(path).metadata.num_rows if file_kind(path) == "parquet" else None
    try:
        with tqdm(total=total, unit=" events", unit_scale=True, desc="reading",
                  disable=not progress, leave=False) as bar:
            for raw in raw_batches(path, columns, chunk_rows):
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
