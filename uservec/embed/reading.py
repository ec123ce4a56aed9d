"""Reading the event file: CSV, CSV.GZ or Parquet in chunks, normalised to one schema.

Errors name the file, the data row (1-based) and the column."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from uservec.embed.options import EmbedError, EventColumns

#: the columns of a spill file: events normalised, with their input row for a stable order
SPILL_SCHEMA = pa.schema([
    ("user_id", pa.string()), ("item_id", pa.string()), ("domain", pa.string()),
    ("timestamp", pa.int64()), ("row", pa.int64()),
])
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
_PARQUET_SUFFIXES = (".parquet", ".pq")


def file_kind(path: Path) -> str:
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
    if file_kind(path) == "parquet":
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


def raw_batches(path: Path, columns: EventColumns, chunk_rows: int) -> Iterator[pa.RecordBatch]:
    """Record batches of at most ``chunk_rows`` rows holding only the event columns."""
    wanted = [c for c in (columns.user, columns.item, columns.timestamp, columns.domain) if c]
    if file_kind(path) == "parquet":
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
