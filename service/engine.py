"""The loaded bundle: manifest, vocabulary, onnxruntime session and recommendation catalogues.

:func:`load_bundle` reads a bundle directory, checks it end to end (schema version, sha256 of every
file, graph inputs/outputs against the manifest, a smoke run whose output shapes must match the
heads and catalogues) and returns an immutable :class:`Bundle`. A request holds on to the bundle it
started with, so a hot reload never changes the model under a running request.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import onnxruntime as ort

from uservec.contract import bags, decision
from uservec.contract.events import event_order, resolve_domain
from uservec.contract.ids import (
    DEFAULT_DOMAIN,
    NUM_RESERVED,
    PAD_ID,
    UNK_ID,
    item_key,
    split_item_key,
)
from uservec.contract.manifest import BundleError, BundleManifest, TaskSpec
from uservec.contract.sequences import batch_length, encode_batch
from uservec.contract.verify import load_and_verify
from uservec.contract.vocab import Vocabulary
from uservec.service.graphs import FULL, Graph, Plan, bag_size, fixed_length, load_graphs
from uservec.service.graphs import USER_VECTOR as USER_VECTOR  # re-exported: routers read it
from uservec.service.retrieval import Catalogue, load_catalogue
from uservec.service.schemas import Event

logger = logging.getLogger(__name__)

#: all graph outputs of one user, each 1-D
Outputs = dict[str, np.ndarray]


@dataclass(frozen=True, eq=False)
class ProfileHead:
    name: str
    output: str
    labels: tuple[str, ...]
    #: (C,) added to the logits for the prior-adjusted decision; None: the bundle has no prior
    prior_shift: np.ndarray | None = None
    #: what the head serves: "deep", "wide" or "wide+deep" (the manifest's served_kind)
    served_kind: str = "deep"


@dataclass(frozen=True, eq=False)
class RecommendHead:
    name: str
    output: str
    domain: str
    #: per vocabulary id: does this head read it (its source domains, real items only)
    reads: np.ndarray
    catalogue: Catalogue
    #: the domains it reads (None: every domain)
    source_domains: frozenset[str] | None = None
    #: what the head serves: "deep", "wide" or "wide+deep" (the manifest's served_kind)
    served_kind: str = "deep"


class DomainRequired(ValueError):
    """An event without a domain whose item id does not name exactly one of the bundle's."""

    def __init__(self, position: int, item_id: str, candidates: Sequence[str]) -> None:
        super().__init__(f"event {position}: item {item_id!r} needs a domain")
        self.position = position
        self.item_id = item_id
        self.candidates = list(candidates)


@dataclass(frozen=True)
class PreparedUser:
    """A user's request events mapped to model ids: what the model reads and what they had."""

    ids: np.ndarray  # (n,) int64, the latest n <= max_len events read, oldest first
    unknown_items: tuple[str, ...]  # raw ids the model never saw (see Bundle.prepare), in order
    seen_keys: frozenset[str]  # item keys of every event in the request (for exclusion)
    known_events: int  # ids that are not UNK: 0 = the answer knows nothing of the user
    outputs: Outputs | None = None  # a stored user's outputs (service.stored_users): no model run
    #: sorted distinct ids of *every* event sent (wide parts read them); None: no wide part
    bag: np.ndarray | None = None

    @property
    def events_used(self) -> int:
        return int(self.ids.size)

    @property
    def model_input(self) -> np.ndarray:
        """What the graph reads, as one array (window, and the bag when there is one): the
        cache key and the batcher's row, so two requests share an entry only when both match."""
        return bags.pack(self.ids, self.bag)


@dataclass(frozen=True, eq=False)
class Bundle:
    path: Path
    manifest: BundleManifest
    vocab: Vocabulary
    #: FULL (the fused graph, every output) and the bundle's per-output subgraphs
    graphs: dict[str, Graph]
    #: output -> the subgraph that computes it alone (outputs without one: only FULL has them)
    subgraph_of: dict[str, str]
    model_file: str
    input_name: str
    #: width of the graph's ``bag`` input (the vocabulary size); 0 when it has no wide part
    bag_size: int
    #: the graph's sequence length when it is not dynamic
    fixed_length: int | None
    default_domain: str
    #: the vocabulary's domains when there are several (an event may then need to name one)
    domains: tuple[str, ...]
    profile_heads: dict[str, ProfileHead]
    recommend_heads: dict[str, RecommendHead]
    loaded_at: datetime
    #: bundle version + model checksum: cache keys of different bundles never collide
    cache_namespace: str

    @property
    def version(self) -> str:
        return self.manifest.bundle_version

    @property
    def max_len(self) -> int:
        return self.manifest.model.max_len

    def domain_of(self, event: Event, position: int) -> str:
        """The event's domain: as sent, else the only one the bundle has, else the only one
        its item id exists in (:class:`DomainRequired` when that is not exactly one)."""
        if event.domain is not None:
            return event.domain
        resolved = resolve_domain(event.item_id, self.vocab, self.domains)
        if resolved is None:
            found = [name for name in self.domains if item_key(event.item_id, name) in self.vocab]
            raise DomainRequired(position, event.item_id, found)
        return resolved

    def prepare(self, events: Sequence[Event], head: RecommendHead | None = None) -> PreparedUser:
        """Order events, map them to ids and pick the window the model reads.

        Without ``head``: the latest ``max_len`` events. With a recommend ``head``: the known
        events of its source domains are selected from the whole sequence first, then the latest
        ``max_len`` of those are kept (the graph drops every other event from that head's input
        anyway: cutting first would lose source events behind a run of other ones).
        ``unknown_items`` are the unknown ids among the events that could have been read: the
        window's, or (``head``) those of its source domains. Unknown ids are no error.
        """
        domains = [self.domain_of(event, pos) for pos, event in enumerate(events)]
        order = event_order([event.item_id for event in events],
                            [event.timestamp for event in events])
        # Event.domain's schema refuses ':', the one character item_key rejects
        keys = [item_key(events[pos].item_id, domains[pos]) for pos in order]
        all_ids = self.vocab.encode(keys)
        if head is None:
            start = max(0, len(keys) - self.max_len) if self.max_len else len(keys)
            positions = np.arange(start, len(keys))
            candidates = positions
        else:
            positions = np.flatnonzero(head.reads[all_ids])[-self.max_len:] if self.max_len else (
                np.zeros(0, dtype=np.int64))
            sources = head.source_domains
            candidates = np.arange(len(keys)) if sources is None else np.array(
                [row for row, pos in enumerate(order) if domains[pos] in sources], dtype=np.int64)
        ids = all_ids[positions]
        unknown = dict.fromkeys(events[order[row]].item_id for row in candidates.tolist()
                                if all_ids[row] == UNK_ID)
        return PreparedUser(ids=ids, unknown_items=tuple(unknown), seen_keys=frozenset(keys),
                            known_events=int(np.count_nonzero(ids != UNK_ID)),
                            bag=bags.bag_ids(all_ids) if self.bag_size else None)

    @property
    def session(self) -> ort.InferenceSession:
        """The fused graph's session (every output)."""
        return self.graphs[FULL].session

    @property
    def output_names(self) -> tuple[str, ...]:
        """Every output the bundle computes, in the fused graph's order."""
        return self.graphs[FULL].outputs

    def plan(self, outputs: Collection[str]) -> Plan:
        """The graphs to run for ``outputs``: their own subgraphs when together they are smaller
        than the fused graph (node count), else the fused graph (its passes are shared)."""
        own = {self.subgraph_of.get(name) for name in outputs}
        if None in own or not own:
            return (FULL,)
        names = tuple(sorted(name for name in own if name is not None))
        cost = sum(self.graphs[name].nodes for name in names)
        return names if cost < self.graphs[FULL].nodes else (FULL,)

    def run(self, sequences: Sequence[np.ndarray], plan: Plan = (FULL,)) -> list[Outputs]:
        """One onnxruntime pass per graph of ``plan`` over many id sequences (blocking; call it
        off the event loop)."""
        unpacked = [bags.unpack(np.asarray(s, dtype=np.int64)) for s in sequences]
        windows = [window for window, _ in unpacked]
        length = self.fixed_length or batch_length(windows, self.max_len)
        items = encode_batch(windows, length)  # (B, L), left-padded
        # a wide part reads the bag of every event sent; given a bare window, that window's ids
        user_bags = [bags.bag_ids(w) if b is None else b for w, b in unpacked]
        rows: list[Outputs] = [{} for _ in sequences]
        for name in plan:
            graph = self.graphs[name]
            names = [i.name for i in graph.session.get_inputs()]
            feed = bags.graph_feed(names, items, self.bag_size, user_bags)
            arrays = graph.session.run(list(graph.outputs), feed)
            for output, array in zip(graph.outputs, arrays, strict=True):
                for row, values in zip(rows, array, strict=True):
                    row[output] = np.array(values)
        return rows


def _source_mask(vocab: Vocabulary, source_domains: Sequence[str] | None) -> np.ndarray:
    reads = np.zeros(vocab.size, dtype=bool)
    reads[NUM_RESERVED:] = True
    if source_domains is not None:
        names = vocab.domains()
        wanted = [names.index(d) for d in source_domains if d in names]
        reads &= np.isin(vocab.domain_ids(), wanted)
    return reads


def _heads(
    root: Path, vocab: Vocabulary, tasks: Sequence[TaskSpec]
) -> tuple[dict[str, ProfileHead], dict[str, RecommendHead]]:
    profile: dict[str, ProfileHead] = {}
    recommend: dict[str, RecommendHead] = {}
    # the entries are complete and the catalogues consistent (export.verify.load_and_verify)
    for task in tasks:
        if task.kind == "profile":
            shift = (None if task.class_prior is None or task.prior_power is None
                     else decision.prior_shift(task.class_prior, task.prior_power))
            profile[task.name] = ProfileHead(task.name, task.output, tuple(task.labels or ()),
                                             shift, task.served_kind)
            continue
        assert task.domain and task.item_keys_file and task.index_file
        catalogue = load_catalogue(
            root, task.domain, task.item_keys_file, task.index_file, task.popularity_file
        )
        reads = _source_mask(vocab, task.source_domains)
        sources = None if task.source_domains is None else frozenset(task.source_domains)
        recommend[task.name] = RecommendHead(
            task.name, task.output, task.domain, reads, catalogue, sources, task.served_kind
        )
    return profile, recommend


def _smoke_run(bundle: Bundle) -> None:
    """Run the graph once and check every output's width against the manifest and catalogues."""
    probe = [np.array([bundle.vocab.size - 1], dtype=np.int64),
             np.full(bundle.max_len, UNK_ID, dtype=np.int64),
             np.array([PAD_ID], dtype=np.int64)]
    try:
        outputs = bundle.run(probe)
    except Exception as exc:  # any onnxruntime failure means the bundle cannot serve
        raise BundleError(f"{bundle.path}: the model fails on a probe batch ({exc})") from exc
    widths = {USER_VECTOR: bundle.manifest.model.dim}
    widths |= {head.output: len(head.labels) for head in bundle.profile_heads.values()}
    widths |= {head.output: head.catalogue.dim for head in bundle.recommend_heads.values()}
    for name, width in widths.items():
        shape = outputs[0][name].shape
        if shape != (width,):
            raise BundleError(f"{bundle.path}: output {name!r} has per-user shape {shape}, "
                              f"expected ({width},)")
        if not all(np.isfinite(row[name]).all() for row in outputs):
            raise BundleError(f"{bundle.path}: output {name!r} is not finite on the probe batch")
    _check_subgraphs(bundle, probe, outputs)


#: a subgraph computes what the fused graph does (export checks the same tolerance)
SUBGRAPH_TOL = 1e-4


def _check_subgraphs(bundle: Bundle, probe: list[np.ndarray], full: list[Outputs]) -> None:
    """Each subgraph must reproduce the fused graph's values on the probe batch."""
    for name, graph in bundle.graphs.items():
        if name == FULL:
            continue
        try:
            rows = bundle.run(probe, (name,))
        except Exception as exc:  # any onnxruntime failure means the bundle cannot serve
            raise BundleError(f"{bundle.path}: subgraph {name} fails on a probe batch "
                              f"({exc})") from exc
        for output in graph.outputs:
            diff = max(float(np.max(np.abs(row[output] - ref[output]), initial=0.0))
                       for row, ref in zip(rows, full, strict=True))
            if not diff <= SUBGRAPH_TOL:
                raise BundleError(f"{bundle.path}: subgraph {name} differs from the fused "
                                  f"graph on {output!r} by {diff:.3g}")


def _default_domain(vocab: Vocabulary) -> str:
    """Events without a domain belong to the vocabulary's only domain when it has one."""
    domains = vocab.domains()
    return domains[0] if len(domains) == 1 else DEFAULT_DOMAIN


def unambiguous_ids(vocab: Vocabulary) -> list[str]:
    """Raw item ids that exist in exactly one of a multi-domain vocabulary's domains: the ids an
    event may send without its domain (sorted; empty for a single-domain vocabulary)."""
    if len(vocab.domains()) < 2:
        return []
    seen: dict[str, int] = {}
    for key in vocab.keys:
        raw = split_item_key(key)[1]
        seen[raw] = seen.get(raw, 0) + 1
    return sorted(raw for raw, count in seen.items() if count == 1)


def load_bundle(
    path: str | Path, *, verify_checksums: bool = True, use_int8: bool = False,
    intra_op_threads: int = 0,
) -> Bundle:
    """Load and check a bundle directory; raises :class:`BundleError` saying what is wrong."""
    root = Path(path)
    # the same checks as `uservec bundle verify` (checksums optional); the graph is checked
    # below on the session that will serve, so it is not opened twice
    manifest = load_and_verify(root, smoke=False, checksums=verify_checksums)
    model_file = manifest.model.int8_file if use_int8 and manifest.model.int8_file else None
    if use_int8 and model_file is None:
        logger.warning("int8 requested but bundle %s has no int8 model (export it with --int8); "
                       "serving the fp32 model", root)
    model_path = root / (model_file or manifest.model.file)
    try:
        vocab = Vocabulary.load(root / manifest.vocab_file)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(
            f"{root / manifest.vocab_file}: cannot read the vocabulary ({exc})"
        ) from exc
    graphs, subgraph_of, input_name = load_graphs(root, manifest, model_path,
                                                  model_file is not None, intra_op_threads)
    profile, recommend = _heads(root, vocab, manifest.tasks)
    model_sha = manifest.files.get(model_path.name, "")
    if not model_sha:
        model_sha = hashlib.sha256(model_path.read_bytes()).hexdigest()
    bundle = Bundle(
        path=root,
        manifest=manifest,
        vocab=vocab,
        graphs=graphs,
        subgraph_of=subgraph_of,
        model_file=model_path.name,
        input_name=input_name,
        bag_size=bag_size(graphs[FULL].session, model_path),
        fixed_length=fixed_length(graphs[FULL].session.get_inputs()[0].shape),
        default_domain=_default_domain(vocab),
        domains=tuple(vocab.domains()) if len(vocab.domains()) > 1 else (),
        profile_heads=profile,
        recommend_heads=recommend,
        loaded_at=datetime.now(UTC),
        cache_namespace=f"{manifest.bundle_version}:{model_sha[:16]}",
    )
    _smoke_run(bundle)
    logger.info(
        "loaded bundle %s from %s (%s and %d subgraphs, %d profile heads, %d recommend heads)",
        bundle.version, root, model_path.name, len(graphs) - 1, len(profile), len(recommend),
    )
    return bundle
