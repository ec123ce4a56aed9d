"""One user's events -> model ids: order, namespacing, window, unknown items."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uservec.contract.events import default_domain, encode_events, event_order, resolve_domain
from uservec.contract.ids import DEFAULT_DOMAIN, UNK_ID, item_key
from uservec.contract.vocab import Vocabulary

VOCAB = Vocabulary(tuple(item_key(str(i), d) for i in range(6) for d in ("books", "games")))

events = st.lists(st.tuples(
    st.sampled_from(["0", "1", "2", "5", "7", "10", "x"]),  # "10" < "2": ties sort as text
    st.sampled_from(["books", "games", None, ""]),
    st.integers(0, 3),
), max_size=15)


DOMAINS = ("books", "games")
#: "7" exists in books only: a domain-less "7" resolves; "0".."5" exist in both and do not
VOCAB = Vocabulary((*VOCAB.keys, item_key("7", "books")))


def domain_of(item, domain):
    """Brute force of the rule: as sent, else the one domain the id exists in, else unknown."""
    if domain:
        return domain
    found = [d for d in DOMAINS if item_key(item, d) in VOCAB.keys]
    return found[0] if len(found) == 1 else DEFAULT_DOMAIN


def reference(user_events, max_len):
    """Brute force: sort (timestamp, item_id, position), namespace, keep the last max_len."""
    ordered = sorted(enumerate(user_events), key=lambda e: (e[1][2], e[1][0], e[0]))
    keys = [item_key(item, domain_of(item, domain)) for _, (item, domain, _) in ordered]
    return [VOCAB.id_of(key) for key in keys][-max_len:] if max_len else []


@given(events, st.integers(0, 10))
def test_ids_are_the_latest_events_in_timestamp_then_item_order(user_events, max_len):
    items, domains, stamps = zip(*user_events, strict=True) if user_events else ((), (), ())
    encoded = encode_events(items, domains, stamps, VOCAB, max_len, DOMAINS)
    assert encoded.ids.tolist() == reference(user_events, max_len)
    assert encoded.events_used == min(len(user_events), max_len)
    assert encoded.seen_keys == {item_key(i, domain_of(i, d)) for i, d, _ in user_events}


@given(events)
def test_without_every_timestamp_the_given_order_stands(user_events):
    items = [item for item, _, _ in user_events]
    stamps = [None, *[stamp for _, _, stamp in user_events][1:]]
    assert event_order(items, stamps) == list(range(len(items)))


def test_unknown_items_are_reported_once_and_only_inside_the_window():
    items = ["x-old", "0", "x-new", "1", "x-new"]
    encoded = encode_events(items, ["books"] * 5, [0, 1, 2, 3, 4], VOCAB, 4, DOMAINS)
    assert encoded.unknown_items == ("x-new",)
    assert encoded.ids.tolist().count(UNK_ID) == 2


def test_a_domain_less_event_resolves_only_to_a_single_domain():
    assert resolve_domain("7", VOCAB, DOMAINS) == "books"
    assert resolve_domain("0", VOCAB, DOMAINS) is None  # in both
    assert resolve_domain("x", VOCAB, DOMAINS) is None  # in none
    single = Vocabulary((item_key("a", "movies"),))
    assert resolve_domain("anything", single, ()) == "movies"


def test_the_default_domain_is_the_vocabulary_s_only_one():
    assert default_domain(VOCAB) == DEFAULT_DOMAIN  # two domains: no guess
    assert default_domain(Vocabulary((item_key("a", "movies"),))) == "movies"


def test_mismatched_columns_and_bad_domains_are_refused():
    with pytest.raises(ValueError, match="one domain and one timestamp per event"):
        encode_events(["0", "1"], ["books"], [0, 1], VOCAB, 4, DOMAINS)
    with pytest.raises(ValueError, match="must not contain ':'"):
        encode_events(["0"], ["a:b"], [0], VOCAB, 4, DOMAINS)
