"""The pure parts of events: topic matching, filters, retry delays, webhook config and
signatures, the event's wire format."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from headwater import App
from headwater.config import Settings
from headwater.events.event import Event, decode_event, topic_matches
from headwater.events.outbox import Outbox
from headwater.events.webhook import parse_webhooks, sign, verify


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


def test_filters_choose_tables_and_operations() -> None:
    s = Settings(events_include="orders.*,customers.insert", events_exclude="orders.delete",
                 events_old_rows="orders")
    box = Outbox(s, "sqlite", None)
    assert box.wants("orders", "insert") and box.wants("orders", "update")
    assert not box.wants("orders", "delete")
    assert box.wants("customers", "insert") and not box.wants("customers", "update")
    assert not box.wants("products", "insert")
    assert box.wants_old("orders") and not box.wants_old("customers")
    off = Outbox(Settings(events_enabled=False), "sqlite", None)
    assert not off.wants("orders", "insert")
    assert Outbox(Settings(events_old_rows="*"), "sqlite", None).wants_old("anything")


def test_retry_delays_double_up_to_the_cap() -> None:
    s = Settings(worker_max_attempts=6, worker_retry_delay=0.5, worker_retry_max_delay=3)
    assert s.retry_delays() == (0.5, 1.0, 2.0, 3.0, 3.0)
    assert Settings(worker_max_attempts=1).retry_delays() == ()
    assert Settings.from_env({"HEADWATER_WORKER_MAX_ATTEMPTS": "3"}).worker_max_attempts == 3


def test_webhooks_parse_and_sign() -> None:
    s = Settings(webhooks='[{"pattern": "orders.*", "url": "http://a/x", "secret": "k"},'
                          ' {"name": "all", "pattern": ["#"], "url": "http://b/y"}]',
                 webhook_secret="default")
    one, two = parse_webhooks(s)
    assert (one.name, one.patterns, one.url, one.secret) == ("webhook-0", ("orders.*",),
                                                             "http://a/x", "k")
    assert (two.name, two.patterns, two.secret) == ("all", ("#",), "default")
    body = b'{"id": "x"}'
    header = sign("k", body)
    assert header == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert verify("k", body, header) and not verify("k", body + b" ", header)
    with pytest.raises(ValueError, match="HEADWATER_WEBHOOKS"):
        parse_webhooks(Settings(webhooks='[{"pattern": "#"}]'))
    assert parse_webhooks(Settings()) == []


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


def test_app_on_registers_named_handlers() -> None:
    app = App()

    @app.on("orders.insert", "orders.update")
    async def ship(event: Event) -> None:
        return None

    @app.on("#", name="audit")
    async def audit(event: Event) -> None:
        return None

    assert set(app.subscriptions) == {f"{__name__}.test_app_on_registers_named_handlers."
                                      f"<locals>.ship", "audit"}
    assert app.subscriptions["audit"].patterns == ("#",)
    with pytest.raises(ValueError, match="named"):
        app.on("#", name="audit")(audit)
    with pytest.raises(ValueError, match="pattern"):
        app.on()
