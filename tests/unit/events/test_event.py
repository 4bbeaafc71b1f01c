"""Events: topic matching (AMQP rules) and the wire format."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater.events.event import Event, decode_event, topic_matches


@pytest.mark.parametrize(("pattern", "key", "matches"), [
    ("orders.insert", "orders.insert", True),
    ("orders.insert", "orders.update", False),
    ("orders.*", "orders.delete", True),
    ("orders.*", "orders", False),
    ("*.insert", "customers.insert", True),
    ("#", "orders.insert", True),
    ("#", "", True),
    ("orders.#", "orders", True),
    ("orders.#", "orders.insert", True),
    ("#.insert", "orders.insert", True),
    ("#.insert", "insert", True),
    ("#.update", "orders.insert", False),
    ("a.#.z", "a.z", True),
    ("a.#.z", "a.b.c.z", True),
    ("a.*.z", "a.z", False),
    ("order_items.*", "orders.insert", False),
])
def test_topic_patterns_follow_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


word = st.text(alphabet="abcxyz_", min_size=1, max_size=4)


@given(st.lists(word, min_size=1, max_size=4))
def test_hash_matches_everything_and_a_key_matches_itself(words: list[str]) -> None:
    key = ".".join(words)
    assert topic_matches("#", key)
    assert topic_matches(key, key)
    assert topic_matches(".".join("*" for _ in words), key)
    assert not topic_matches(".".join("*" for _ in words) + ".*", key)


def test_event_wire_format_round_trips() -> None:
    e = Event(id="6f1c0b3e-0000-4000-8000-000000000000", seq=7, table="orders", op="update",
              pk={"id": 1}, new={"id": 1, "total": 2.5}, old={"id": 1, "total": 1.0},
              principal={"role": "anonymous", "claims": {}}, txid=42,
              at=datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC))
    assert e.routing_key == "orders.update"
    assert decode_event(msgspec.json.encode(e)) == e
    # what PostgreSQL's json_build_object gives for a delete decodes too
    raw = (b'{"id" : "6f1c0b3e-0000-4000-8000-000000000000", "seq" : 8, "table" : "orders", '
           b'"op" : "delete", "pk" : {"id": 1}, "new" : null, "old" : {"id": 1}, '
           b'"principal" : {"role": "anonymous", "claims": {}}, "txid" : 9, '
           b'"at" : "2024-01-02T03:04:05.123456+00:00"}')
    d = decode_event(raw)
    assert (d.op, d.new, d.old, d.at.microsecond) == ("delete", None, {"id": 1}, 123456)
