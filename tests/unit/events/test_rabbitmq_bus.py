"""The RabbitMQ bus's pure parts: the nodes of ``amqp_url`` (each with a heartbeat short
enough to leave a hung node), the order they are tried in, and the name a connection gives."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from aiormq import Connection
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from headwater.events.rabbitmq_bus import (
    HEARTBEAT,
    NodeOrder,
    broker_urls,
    client_properties,
    connection_name,
)


def test_each_node_in_order_with_the_default_heartbeat() -> None:
    assert broker_urls(" amqp://guest:guest@127.0.0.1:5672/ ,amqp://h:5673/vh,,") == [
        f"amqp://guest:guest@127.0.0.1:5672/?heartbeat={HEARTBEAT}",
        f"amqp://h:5673/vh?heartbeat={HEARTBEAT}"]


def test_a_url_keeps_its_own_heartbeat_and_other_options() -> None:
    assert broker_urls("amqp://h/?heartbeat=30") == ["amqp://h/?heartbeat=30"]
    assert broker_urls("amqps://u:p@h/?name=a%20b") == [
        f"amqps://u:p@h/?name=a%20b&heartbeat={HEARTBEAT}"]


def test_an_empty_heartbeat_is_the_urls_own() -> None:
    # aiormq reads heartbeat= as 0 (heartbeats off): the URL said so, it is not overridden.
    assert broker_urls("amqp://h/?heartbeat=") == ["amqp://h/?heartbeat="]


def test_nothing_but_commas_is_no_node() -> None:
    assert broker_urls(" , ,") == []


@given(st.lists(st.sampled_from(["amqp://a/", "amqp://b:1/v?x=1", "amqps://c/?heartbeat=5"]),
                max_size=5))
def test_every_node_has_one_heartbeat(nodes: list[str]) -> None:
    got = broker_urls(",".join(nodes))
    assert len(got) == len(nodes)
    for given_url, url in zip(nodes, got, strict=True):
        beats = parse_qs(urlsplit(url).query)["heartbeat"]
        assert beats == (["5"] if "heartbeat" in given_url else [str(HEARTBEAT)])


def announced_name(url: str) -> str:
    """The connection name aiormq itself would send for ``url`` with our properties (its
    ``connect`` builds Connection.StartOk's table this way)."""
    connection = Connection(URL(url), client_properties=client_properties(url))
    return str(connection._client_properties(**(client_properties(url) or {}))
               ["connection_name"])


async def test_a_connection_is_named_after_its_process_unless_the_url_names_it() -> None:
    # async: aiormq's Connection takes the running loop
    assert announced_name("amqp://h/") == connection_name()
    assert announced_name("amqp://h/?name=orders-relay") == "orders-relay"


def test_the_first_node_is_tried_first_then_the_others_in_turn() -> None:
    assert NodeOrder(3).tries() == [0, 1, 2]


@given(st.integers(1, 6), st.data())
def test_a_node_that_failed_is_tried_last(count: int, data: st.DataObject) -> None:
    order = NodeOrder(count)
    for _ in range(5):
        node = data.draw(st.integers(0, count - 1))
        order.connected_to(node)
        assert order.tries()[0] == node  # connected again: the same node first
        order.failed()
        tries = order.tries()
        assert sorted(tries) == list(range(count))  # every node, once
        assert tries[-1] == node  # the one that failed last
