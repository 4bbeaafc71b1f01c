"""Webhooks: configuration parsed from settings, and request signatures."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from headwater.config import Settings
from headwater.events.webhook import parse_webhooks, sign, verify


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
