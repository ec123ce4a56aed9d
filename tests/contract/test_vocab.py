import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from uservec.contract.ids import NUM_RESERVED, PAD_ID, UNK_ID, item_key
from uservec.contract.vocab import Vocabulary


def test_min_count_drops_rare_items_to_unknown():
    vocab = Vocabulary.from_counts({"d::a": 3, "d::b": 1, "d::c": 2}, min_count=2)
    assert vocab.keys == ("d::a", "d::c")
    assert vocab.id_of("d::b") == UNK_ID
    expected = [NUM_RESERVED, NUM_RESERVED + 1, UNK_ID]
    assert vocab.encode(["d::a", "d::c", "zzz"]).tolist() == expected


@given(st.dictionaries(st.text(min_size=1, max_size=8), st.integers(1, 50), max_size=30))
def test_json_round_trip_preserves_every_id(counts):
    vocab = Vocabulary.from_counts(counts)
    again = Vocabulary.from_json(json.loads(json.dumps(vocab.to_json())))
    assert again.keys == vocab.keys
    for key in counts:
        assert again.id_of(key) == vocab.id_of(key) >= NUM_RESERVED


def test_reserved_ids_name_themselves_and_size_counts_them():
    vocab = Vocabulary(("x::1",))
    assert vocab.size == NUM_RESERVED + 1
    assert vocab.key_of(PAD_ID) == "<pad>" and vocab.key_of(UNK_ID) == "<unk>"


def test_domain_ids_follow_sorted_domains():
    vocab = Vocabulary((item_key("1", "b"), item_key("1", "a")))
    assert vocab.domains() == ["a", "b"]
    assert vocab.domain_ids().tolist() == [-1, -1, 1, 0]


def test_encode_items_namespaces_by_domain():
    vocab = Vocabulary((item_key("1", "books"),))
    assert vocab.encode_items(["1", "1"], ["books", "games"]).tolist() == [NUM_RESERVED, UNK_ID]


def test_incompatible_versions_are_refused_with_reason():
    with pytest.raises(ValueError, match="format version"):
        Vocabulary.from_json({"format_version": 99, "keys": []})
    with pytest.raises(ValueError, match="reserved ids"):
        Vocabulary.from_json({"format_version": 1, "reserved": {"<pad>": 5}, "keys": []})


def test_duplicate_keys_are_rejected():
    with pytest.raises(ValueError, match="unique"):
        Vocabulary(("a::1", "a::1"))


def test_domains_are_split_out_of_the_keys_once(monkeypatch):
    """GET /v1/bundle reports them per request: a million keys took a sixth of a second each."""
    from uservec.contract import vocab as vocab_module

    vocab = Vocabulary((item_key("1", "books"), item_key("2", "games"), item_key("3", "books")))
    calls = []
    real = vocab_module.split_item_key
    monkeypatch.setattr(vocab_module, "split_item_key", lambda key: calls.append(key) or real(key))
    first = vocab.domains()
    first.append("mutated")  # callers get their own list
    assert vocab.domains() == ["books", "games"]
    assert len(calls) == 3


@pytest.mark.parametrize("keys", ["abc", [1, 2], None])
def test_a_malformed_vocabulary_is_a_value_error_not_a_crash(keys):
    good = Vocabulary((item_key("1", "books"),)).to_json()
    with pytest.raises(ValueError, match="keys"):
        Vocabulary.from_json({**good, "keys": keys})
    with pytest.raises(ValueError, match="JSON object"):
        Vocabulary.from_json([good])  # type: ignore[arg-type]

