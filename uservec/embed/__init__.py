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

Modules, in the order the data goes through them: ``options`` (what is asked and answered),
``reading`` (the event file, normalised), ``spill`` (partitions by user hash), ``model`` (the
bundle's graph and the output schema), ``partition`` (one partition's users embedded), ``run``
(workers, the output file).
"""

from uservec.embed.model import EmbedModel, load_model, output_schema
from uservec.embed.options import EmbedError, EmbedOptions, EmbedSummary, EventColumns
from uservec.embed.run import embed_file

__all__ = [
    "EmbedError", "EmbedModel", "EmbedOptions", "EmbedSummary", "EventColumns", "embed_file",
    "load_model", "output_schema",
]
