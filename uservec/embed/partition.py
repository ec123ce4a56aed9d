"""Embedding one spill partition: its users in the contract's order, cut to their latest
``max_len`` events, run in batches of similar length."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.ipc as ipc

from uservec.contract.events import encode_events
from uservec.embed.model import EmbedModel, output_schema, softmax
from uservec.embed.options import EmbedOptions
from uservec.embed.spill import MAX_DEPTH, SpillFile, resplit


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
    whole = model.reads_bag  # wide parts read every event: keep them all, the run cuts the window
    sequences = [
        encode_events(items[a:b], domains[a:b], stamps[a:b], model.vocab,
                      b - a if whole else model.max_len, model.domains).ids
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
        probabilities = softmax(logits)
        labels = np.asarray(head.labels, dtype=object)[np.argmax(probabilities, axis=1)]
        columns += [pa.array(labels.tolist(), pa.string()),
                    pa.FixedSizeListArray.from_arrays(
                        pa.array(probabilities.astype(np.float32).reshape(-1)),
                        len(head.labels))]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


@dataclass
class Held:
    rows: int = 0


def embed_partition(model: EmbedModel, part: SpillFile, options: EmbedOptions,
                    held: Held) -> Iterator[pa.RecordBatch]:
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
    # a wide part reads every event of a user, the encoder only the latest max_len
    kept, offsets = _users(table, max(table.num_rows, 1) if model.reads_bag else model.max_len)
    del table
    schema = output_schema(model, options.decision)
    # a few thousand users at a time: Python lists of their rows stay small
    group = options.batch_size * 16
    for first in range(0, len(offsets) - 1, group):
        last = min(first + group, len(offsets) - 1)
        rows = kept.slice(int(offsets[first]), int(offsets[last] - offsets[first]))
        yield _embed_rows(model, rows, offsets[first:last + 1] - offsets[first],
                          options.batch_size, schema)
