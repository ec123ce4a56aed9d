"""What each endpoint computes, free of HTTP: limits -> prepare -> encode (cache) -> heads/search.

Each endpoint computes only the outputs it returns (the bundle's per-output subgraphs): ``/embed``
the user vector, ``/predict-profile`` the asked heads, ``/recommend`` the domain's query. The cache
holds each output of a user on its own, so ``/recommend`` after ``/embed`` of the same sequence runs
only the task's pass.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TypedDict

import numpy as np

from uservec.contract.decision import Decision
from uservec.contract.ids import item_key, split_item_key
from uservec.service.engine import (
    USER_VECTOR,
    Bundle,
    DomainRequired,
    PreparedUser,
    ProfileHead,
    RecommendHead,
)
from uservec.service.errors import InvalidRequest
from uservec.service.limits import check_exclude, check_k, check_users
from uservec.service.metrics import Timings
from uservec.service.next_item import NEXT_ITEM, own_domain_rankings
from uservec.service.retrieval import Scored
from uservec.service.runtime import Encoded, Runtime
from uservec.service.schemas import (
    AttributePrediction,
    EmbedRequest,
    EmbedResponse,
    EmbedResult,
    Fallback,
    ProfileRequest,
    ProfileResponse,
    ProfileResult,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RecommendResult,
    UserEvents,
)
from uservec.service.stored_users import stored_users


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis, in float64."""
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    probabilities: np.ndarray = exp / exp.sum(axis=-1, keepdims=True)
    return probabilities


async def _prepare(
    runtime: Runtime, bundle: Bundle, users: Sequence[UserEvents], endpoint: str,
    head: RecommendHead | None = None,
) -> list[PreparedUser]:
    check_users(users, runtime.settings)
    stored = await stored_users(runtime.users, bundle, users, runtime.in_thread, head)
    prepared = []
    for position, user in enumerate(users):
        if user.events is None:
            prepared.append(stored[position])
            continue
        try:
            prepared.append(bundle.prepare(user.events, head))
        except DomainRequired as exc:
            raise InvalidRequest(
                f"user {position}, event {exc.position}: item {exc.item_id!r} is in "
                f"{'several' if exc.candidates else 'none'} of this bundle's domains; say "
                "which with 'domain'",
                code="domain_required",
                details={"user": position, "event": exc.position, "item_id": exc.item_id,
                         "domains": exc.candidates, "available": bundle.vocab.domains()},
            ) from exc
    runtime.metrics.users.labels(endpoint=endpoint).inc(len(users))
    runtime.metrics.unknown_items.inc(sum(len(p.unknown_items) for p in prepared))
    return prepared


class _UserFields(TypedDict):
    user_id: str | None
    events_used: int
    known_events: int
    unknown_items: list[str]
    cached: bool
    fallback: Fallback | None


def _common(user: UserEvents, prepared: PreparedUser, cached: bool,
            fallback: Fallback = "no_signal") -> _UserFields:
    """The fields every result has; ``fallback`` is what a user with no known event got."""
    return {
        "user_id": user.user_id,
        "events_used": prepared.events_used,
        "known_events": prepared.known_events,
        "unknown_items": list(prepared.unknown_items),
        "cached": cached,
        "fallback": None if prepared.known_events else fallback,
    }


async def embed_users(runtime: Runtime, request: EmbedRequest, timings: Timings) -> EmbedResponse:
    bundle = runtime.bundle  # read once: the whole request uses this bundle
    prepared = await _prepare(runtime, bundle, request.users, "embed")
    encoded = await runtime.encode(bundle, prepared, timings, (USER_VECTOR,))
    results = []
    for user, prep, enc in zip(request.users, prepared, encoded, strict=True):
        vector = enc.outputs[USER_VECTOR]
        results.append(EmbedResult(
            vector=vector.astype(float).tolist(), dim=int(vector.size),
            **_common(user, prep, enc.cached),
        ))
    return EmbedResponse(bundle_version=bundle.version, results=results)


def _profile_heads(
    bundle: Bundle, names: Sequence[str] | None, rule: Decision = "as_trained"
) -> list[ProfileHead]:
    available = list(bundle.profile_heads)
    if names is None:
        names = available
    unknown = [name for name in names if name not in bundle.profile_heads]
    if unknown or not names:
        if unknown:
            message = f"unknown profile attributes {unknown}"
        elif available:
            message = "attributes is empty: name at least one, or leave it out for all"
        else:
            message = "this bundle has no profile heads"
        raise InvalidRequest(message, code="unknown_attribute",
                             details={"unknown": unknown, "available": available})
    heads = [bundle.profile_heads[name] for name in dict.fromkeys(names)]
    lacking = [] if rule == "as_trained" else [h.name for h in heads if h.prior_shift is None]
    if lacking:
        raise InvalidRequest(
            f"decision 'prior_adjusted' needs the heads' training label prior, and this bundle "
            f"has none for {lacking} (exported before it was recorded: re-export the run, or "
            "ask for decision 'as_trained')",
            code="decision_unavailable", details={"attributes": lacking},
        )
    return heads


def predict_attribute(
    head: ProfileHead, logits: np.ndarray, rule: Decision = "as_trained"
) -> AttributePrediction:
    """Label and probabilities of one head under ``rule`` (:mod:`uservec.decision`)."""
    if rule == "prior_adjusted":
        assert head.prior_shift is not None  # _profile_heads refused the request otherwise
        logits = logits + head.prior_shift
    probabilities = softmax(logits)
    best = int(np.argmax(probabilities))
    return AttributePrediction(
        label=head.labels[best],
        probability=float(probabilities[best]),
        probabilities={label: float(p) for label, p in zip(head.labels, probabilities,
                                                             strict=True)},
    )


async def predict_profiles(
    runtime: Runtime, request: ProfileRequest, timings: Timings
) -> ProfileResponse:
    bundle = runtime.bundle
    heads = _profile_heads(bundle, request.attributes, request.decision)
    prepared = await _prepare(runtime, bundle, request.users, "predict-profile")
    encoded = await runtime.encode(bundle, prepared, timings, [head.output for head in heads])
    results = [
        ProfileResult(
            attributes={head.name: predict_attribute(head, enc.outputs[head.output],
                                                     request.decision)
                        for head in heads},
            **_common(user, prep, enc.cached),
        )
        for user, prep, enc in zip(request.users, prepared, encoded, strict=True)
    ]
    return ProfileResponse(bundle_version=bundle.version, decision=request.decision,
                           served_kinds={head.name: head.served_kind for head in heads},
                           results=results)


def recommend_head(bundle: Bundle, domain: str | None) -> RecommendHead:
    """The head serving ``domain``; ``domain`` may be omitted when there is only one."""
    by_domain: dict[str, RecommendHead] = {}
    for head in bundle.recommend_heads.values():
        by_domain.setdefault(head.domain, head)
    available = sorted(by_domain)
    if domain is None:
        if len(by_domain) == 1:
            return next(iter(by_domain.values()))
        if not by_domain:
            raise InvalidRequest("this bundle has no recommendation heads",
                                 code="unknown_domain", details={"available": available})
        raise InvalidRequest(
            f"this bundle recommends in {len(available)} domains; say which with 'domain'",
            code="domain_required", details={"available": available},
        )
    if domain not in by_domain:
        raise InvalidRequest(f"no recommendation head for domain {domain!r}",
                             code="unknown_domain", details={"domain": domain,
                                                             "available": available})
    return by_domain[domain]


def _exclusions(
    head: RecommendHead, request: RecommendRequest, prepared: Sequence[PreparedUser]
) -> list[set[str]]:
    """Per user, the item keys not to recommend: passed ids, plus their own items by default."""
    excluded = []
    for user, prep in zip(request.users, prepared, strict=True):
        keys = {item_key(item_id, head.domain) for item_id in [*request.exclude, *user.exclude]}
        excluded.append(keys | prep.seen_keys if request.exclude_seen else keys)
    return excluded


async def recommend_items(
    runtime: Runtime, request: RecommendRequest, timings: Timings
) -> RecommendResponse:
    k = runtime.settings.default_k if request.k is None else request.k
    check_k(k, runtime.settings)
    check_exclude(len(request.exclude), runtime.settings)
    for position, user in enumerate(request.users):
        check_exclude(len(user.exclude), runtime.settings, position)
    bundle = runtime.bundle
    head = recommend_head(bundle, request.domain)
    prepared = await _prepare(runtime, bundle, request.users, "recommend", head)
    excluded = _exclusions(head, request, prepared)
    own = await own_domain_rankings(runtime, bundle, head.domain, request.users, prepared,
                                    excluded, k, timings)
    # a user with no known event the head reads is cold: popularity, no model pass needed
    warm = [pos for pos, prep in enumerate(prepared) if prep.known_events and pos not in own]
    encoded: dict[int, Encoded] = dict(zip(
        warm, await runtime.encode(bundle, [prepared[pos] for pos in warm], timings,
                                   (head.output,)),
        strict=True,
    ))
    ranked: dict[int, list[Scored]] = {}
    if warm:
        queries = np.stack([encoded[pos].outputs[head.output] for pos in warm])  # (B, D')
        start = time.perf_counter()
        found = await runtime.in_thread(
            head.catalogue.search, queries, [excluded[pos] for pos in warm], k
        )
        timings.add("search", time.perf_counter() - start)
        ranked = dict(zip(warm, found, strict=True))
    results = []
    for pos, (user, prep) in enumerate(zip(request.users, prepared, strict=True)):
        cold = pos not in ranked and pos not in own
        if pos in own:  # history in the domain: the pretrained next-item head
            items, answered_by, cached = own[pos].items, NEXT_ITEM, own[pos].cached
            prep = own[pos].prepared
        elif cold:
            items = head.catalogue.popular(excluded[pos], k)
            answered_by, cached = "popularity", False
            runtime.metrics.fallbacks.labels(domain=head.domain).inc()
        else:
            items, answered_by, cached = ranked[pos], head.name, encoded[pos].cached
        results.append(RecommendResult(
            items=[RecommendedItem(item_id=split_item_key(key)[1], score=score)
                   for key, score in items], answered_by=answered_by,
            **_common(user, prep, cached, "popularity"),
        ))
    return RecommendResponse(
        bundle_version=bundle.version, domain=head.domain, task=head.name,
        served_kind=head.served_kind, results=results,
    )
