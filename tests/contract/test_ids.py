import pytest
from hypothesis import given
from hypothesis import strategies as st

from uservec.contract.ids import (
    DEFAULT_DOMAIN,
    NUM_RESERVED,
    PAD_ID,
    UNK_ID,
    item_key,
    split_item_key,
)

domains = st.text(min_size=1, max_size=10).filter(lambda d: ":" not in d)


def test_reserved_ids_are_distinct_and_first():
    assert {PAD_ID, UNK_ID} == set(range(NUM_RESERVED))


@given(st.text(max_size=20), domains)
def test_item_key_round_trips(item_id, domain):
    assert split_item_key(item_key(item_id, domain)) == (domain, item_id)


def test_same_raw_id_in_two_domains_gives_two_keys():
    assert item_key("42", "books") != item_key("42", "games")


def test_missing_domain_uses_default():
    assert split_item_key(item_key("7")) == (DEFAULT_DOMAIN, "7")
    assert item_key("7", "") == item_key("7", None)


def test_domain_with_separator_is_rejected():
    with pytest.raises(ValueError, match="must not contain"):
        item_key("1", "a::b")
