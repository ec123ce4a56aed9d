"""The OpenAPI document as this server will answer it: its settings' limits, its bundle's names.

FastAPI's document knows the request models only; what a request must also satisfy depends on the
settings (users per request, events per user, ``k``, excluded ids) and on the bundle being served
(its recommend domains, its profile heads and which of them have a label prior, which item ids may
omit their domain). A client or fuzzer that trusts a generic document gets refusals for requests
it was told are valid, so :func:`document` writes those rules into the document, with request
examples built from the bundle, and :func:`install_openapi` serves it (rebuilt when the bundle
changes). Security schemes appear only when API keys are configured (the routers add them).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from uservec.contract.ids import split_item_key
from uservec.service.engine import Bundle, unambiguous_ids
from uservec.service.runtime import Runtime
from uservec.service.settings import Settings

#: a multi-domain bundle lists the item ids that may omit their domain when there are at most
#: this many (the list goes into the document); above it the document requires the domain
MAX_LISTED_IDS = 5_000

NEUTRAL_NOTE = (
    "\n\nNo bundle is loaded: the request examples are illustrative (item ids and domains "
    "are placeholders); `GET /v1/bundle` lists the real ones once a bundle is served."
)
BUNDLE_NOTE = (
    "\n\nThis document describes bundle `{version}`: the request examples use its items, and the "
    "domain, attribute and limit rules are this server's."
)

Doc = dict[str, Any]


def _schema(doc: Doc, name: str) -> Doc:
    schema: Doc = doc["components"]["schemas"][name]
    return schema


def apply_limits(doc: Doc, settings: Settings) -> None:
    """Settings limits as ``maxItems`` / ``maximum``, so schema-valid means within limits."""
    for name in ("EmbedRequest", "ProfileRequest", "RecommendRequest"):
        _schema(doc, name)["properties"]["users"]["maxItems"] = settings.max_users_per_request
    for name in ("UserEvents", "RecommendUser"):
        _schema(doc, name)["properties"]["events"]["maxItems"] = settings.max_events_per_user
    _schema(doc, "RecommendUser")["properties"]["exclude"]["maxItems"] = settings.max_exclude
    recommend = _schema(doc, "RecommendRequest")["properties"]
    recommend["exclude"]["maxItems"] = settings.max_exclude
    recommend["k"] = {**recommend["k"], "anyOf": [
        {"type": "integer", "minimum": 1, "maximum": settings.max_k}, {"type": "null"}]}
    recommend["k"].pop("minimum", None)


def _item_ids_without_domain(bundle: Bundle) -> list[str] | None:
    """Raw ids that resolve without a domain (None: too many to list)."""
    if len(bundle.vocab.keys) > 2 * MAX_LISTED_IDS:  # not worth scanning: far too many
        return None
    ids = unambiguous_ids(bundle.vocab)
    return ids if len(ids) <= MAX_LISTED_IDS else None


def _event_schema(doc: Doc, bundle: Bundle) -> None:
    """Multi-domain bundle: an event names its domain, unless its item id is one of those that
    exist in exactly one domain (then the id alone is enough)."""
    if not bundle.domains:
        return  # one domain: an event without one belongs to it
    event = _schema(doc, "Event")
    with_domain = copy.deepcopy(event)
    with_domain["required"] = ["item_id", "domain"]
    with_domain["properties"]["domain"] = with_domain["properties"]["domain"]["anyOf"][0] | {
        "description": with_domain["properties"]["domain"]["description"]}
    variants = [with_domain]
    listed = _item_ids_without_domain(bundle)
    if listed:
        by_id = copy.deepcopy(event)
        by_id["properties"]["domain"] = {"type": "null", "description": "omitted or null"}
        by_id["properties"]["item_id"] = {**by_id["properties"]["item_id"], "enum": listed}
        variants.append(by_id)
    note = ("an event names its domain" + (
        ", unless its item id is one of those listed in the second form (ids that exist in "
        "exactly one of the bundle's domains)" if listed else
        "; an item id that exists in exactly one domain may omit it (the ids are too many to "
        "list here)"))
    doc["components"]["schemas"]["Event"] = {
        "title": "Event", "description": f"One behaviour event: {note}.", "oneOf": variants}


def _recommend_schema(doc: Doc, bundle: Bundle) -> None:
    domains = sorted({head.domain for head in bundle.recommend_heads.values()})
    request = _schema(doc, "RecommendRequest")
    field = request["properties"]["domain"]
    if len(domains) > 1:
        request["properties"]["domain"] = {"type": "string", "enum": domains,
                                           "description": field["description"]}
        request["required"] = ["users", "domain"]
    else:
        field["anyOf"] = [{"type": "string", "enum": domains}, {"type": "null"}]


def _profile_schema(doc: Doc, bundle: Bundle) -> None:
    """Attribute names from the bundle; ``prior_adjusted`` only for heads that have a prior."""
    request = _schema(doc, "ProfileRequest")
    names = sorted(bundle.profile_heads)
    with_prior = sorted(n for n, h in bundle.profile_heads.items() if h.prior_shift is not None)
    attributes = request["properties"]["attributes"]
    attributes["anyOf"][0]["items"] = {"type": "string", "enum": names}
    decision = request["properties"]["decision"]
    if len(with_prior) == len(names):
        return
    if not with_prior:
        decision["enum"] = ["as_trained"]
        return
    # some heads have a prior, some do not: prior_adjusted must name only those that do
    as_trained = copy.deepcopy(request)
    as_trained["properties"]["decision"] = {**decision, "enum": ["as_trained"]}
    adjusted = copy.deepcopy(request)
    adjusted["properties"]["decision"] = {**decision, "enum": ["prior_adjusted"]}
    adjusted["properties"]["attributes"] = {
        "type": "array", "minItems": 1, "items": {"type": "string", "enum": with_prior},
        "description": attributes["description"]}
    adjusted["required"] = ["users", "decision", "attributes"]
    doc["components"]["schemas"]["ProfileRequest"] = {
        "title": "ProfileRequest",
        "description": "decision prior_adjusted needs the attributes named, among the heads with "
        f"a training label prior ({', '.join(with_prior)})",
        "anyOf": [as_trained, adjusted]}


def example_events(bundle: Bundle | None, domains: set[str] | None = None
                   ) -> list[dict[str, Any]]:
    """A few events of items the bundle knows (of ``domains`` when given); placeholders without
    a bundle."""
    if bundle is None:
        return [{"item_id": "item-1", "domain": "books"}, {"item_id": "item-2", "domain": "books"}]
    events = []
    for key in bundle.vocab.keys:
        domain, raw = split_item_key(key)
        if domains is None or domain in domains:
            events.append({"item_id": raw, "domain": domain})
        if len(events) == 3:
            break
    return events


def _examples(bundle: Bundle | None) -> dict[str, Any]:
    """One request example per inference endpoint, valid for ``bundle``."""
    user = {"user_id": "u1", "events": example_events(bundle)}
    profile: dict[str, Any] = {"users": [user]}
    recommend: dict[str, Any] = {"users": [user], "k": 5}
    if bundle is None:
        profile["attributes"] = ["gender"]
        recommend["domain"] = "books"
    else:
        if bundle.profile_heads:
            profile["attributes"] = sorted(bundle.profile_heads)[:1]
        heads = sorted(bundle.recommend_heads.values(), key=lambda h: h.domain)
        if heads:
            head = heads[0]
            recommend["domain"] = head.domain
            sources = None if head.source_domains is None else set(head.source_domains)
            recommend["users"] = [{"user_id": "u1", "events": example_events(bundle, sources)}]
    return {"/embed": {"users": [user]}, "/predict-profile": profile, "/recommend": recommend}


def _add_examples(doc: Doc, bundle: Bundle | None) -> None:
    summary = "events of items this bundle knows" if bundle else "illustrative placeholders"
    for path, value in _examples(bundle).items():
        operation = doc["paths"].get(path, {}).get("post")
        if operation is not None:
            media = operation["requestBody"]["content"]["application/json"]
            media["examples"] = {"request": {"summary": summary, "value": value}}


def document(base: Doc, settings: Settings, bundle: Bundle | None) -> Doc:
    """``base`` (FastAPI's document) with this server's limits, bundle rules and examples."""
    doc = copy.deepcopy(base)
    apply_limits(doc, settings)
    if bundle is None:
        doc["info"]["description"] += NEUTRAL_NOTE
    else:
        doc["info"]["description"] += BUNDLE_NOTE.format(version=bundle.version)
        _event_schema(doc, bundle)
        if bundle.recommend_heads:
            _recommend_schema(doc, bundle)
        else:  # every request would be refused: the operation is not offered
            doc["paths"].pop("/recommend", None)
        if bundle.profile_heads:
            _profile_schema(doc, bundle)
        else:
            doc["paths"].pop("/predict-profile", None)
    _add_examples(doc, bundle)
    return doc


def install_openapi(app: FastAPI, settings: Settings) -> None:
    """Serve :func:`document` for the bundle being served, rebuilt only when it changes."""
    plain: Callable[[], Doc] = app.openapi
    built: list[tuple[Bundle | None, Doc]] = []

    def openapi() -> Doc:
        runtime: Runtime | None = getattr(app.state, "runtime", None)
        bundle = runtime.current if runtime is not None else None
        if not built or built[0][0] is not bundle:
            built[:] = [(bundle, document(plain(), settings, bundle))]
        return built[0][1]

    app.openapi = openapi  # type: ignore[method-assign]
