"""The hot endpoints' request path: the event check accepts exactly what ``Event`` accepts."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from uservec.service.fastpath import EventView, check_events, parse_request
from uservec.service.schemas import EmbedRequest, Event, RecommendRequest

values = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=6),
    st.text(alphabet=":ab\n", max_size=4), st.text(min_size=510, max_size=514),
    st.lists(st.integers(), max_size=2),
)
events = st.dictionaries(st.sampled_from(["item_id", "domain", "timestamp", "other"]), values,
                         max_size=4)


@given(events)
def test_the_check_accepts_exactly_what_event_accepts_and_reads_it_alike(raw):
    checked = check_events([raw])
    try:
        model = Event.model_validate(raw)
    except ValidationError:
        assert checked is None  # FastAPI's validation answers with its own 422
        return
    assert checked == [EventView(model.item_id, model.domain, model.timestamp)]


@pytest.mark.parametrize("raw", [
    {"item_id": "a", "timestamp": True}, {"item_id": ""}, {"item_id": 7},
    {"item_id": "a", "domain": "x:y"}, {"item_id": "a", "extra": 1},
    {"item_id": "a", "timestamp": math.inf}, {"domain": "d"}, ["a"],
])
def test_events_event_refuses_are_left_to_fastapi(raw):
    assert check_events([raw]) is None
    with pytest.raises(ValidationError):
        Event.model_validate(raw)


def test_a_well_formed_request_is_read_without_an_event_model():
    body = {"users": [{"user_id": "u", "events": [{"item_id": "a", "timestamp": 3},
                                                  {"item_id": "b", "domain": "d"}]}]}
    parsed = parse_request(orjson.dumps(body), EmbedRequest)
    assert isinstance(parsed, EmbedRequest)
    user = parsed.users[0]
    assert user.user_id == "u"
    assert user.events == [EventView("a", None, 3.0), EventView("b", "d", None)]


@pytest.mark.parametrize("body", [
    b"", b"{", b'{"users": []}', b'{"users": [{"events": [{"item_id": 7}]}]}',
    b'{"users": [{"events": []}], "k": "5"}', b'{"users": [{"events": [], "x": 1}]}',
    b'{"users": [{"events": [{"item_id": "a", "timestamp": NaN}]}]}',
])
def test_requests_that_may_be_a_422_take_fastapis_path(body):
    assert parse_request(body, RecommendRequest) is None


def test_the_app_has_one_middleware_and_documents_the_declared_request_models(make_settings):
    from uservec.service.app import create_app

    app = create_app(make_settings())
    assert len(app.user_middleware) == 1
    body = app.openapi()["paths"]["/embed"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/EmbedRequest")
    events = app.openapi()["components"]["schemas"]["UserEvents"]["properties"]["events"]
    # `events` is optional (a stored `user_id` may stand in); when sent it is a list of Event.
    arrays = [option for option in events.get("anyOf", [events]) if option.get("type") == "array"]
    assert [option["items"]["$ref"].rsplit("/", 1)[-1] for option in arrays] == ["Event"]
