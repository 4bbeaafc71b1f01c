"""``amqp_url``: the cluster's nodes, each with a heartbeat short enough to leave a hung node."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from hypothesis import given
from hypothesis import strategies as st

from headwater.events.rabbitmq_bus import HEARTBEAT, broker_urls


def test_each_node_in_order_with_the_default_heartbeat() -> None:
    assert broker_urls(" amqp://guest:guest@127.0.0.1:5672/ ,amqp://h:5673/vh,,") == [
        f"amqp://guest:guest@127.0.0.1:5672/?heartbeat={HEARTBEAT}",
        f"amqp://h:5673/vh?heartbeat={HEARTBEAT}"]


def test_a_url_keeps_its_own_heartbeat_and_other_options() -> None:
    assert broker_urls("amqp://h/?heartbeat=30") == ["amqp://h/?heartbeat=30"]
    assert broker_urls("amqps://u:p@h/?name=a%20b") == [
        f"amqps://u:p@h/?name=a%20b&heartbeat={HEARTBEAT}"]


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
