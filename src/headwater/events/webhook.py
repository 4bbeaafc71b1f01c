"""Webhooks: a built-in handler kind that POSTs each event, signed, to a URL.

Configured by ``HEADWATER_WEBHOOKS`` as JSON::

    [{"pattern": "orders.*", "url": "https://example.com/hook", "secret": "s3cret"},
     {"name": "audit", "pattern": "#", "url": "https://audit.example.com/in"}]

The body is the event as JSON; ``X-Headwater-Signature: sha256=<hex>`` is the HMAC-SHA256 of
that body under the webhook's secret (or ``HEADWATER_WEBHOOK_SECRET``). Any answer but 2xx, or
no answer within ``webhook_timeout``, fails the attempt: the worker retries it with growing
delays and dead-letters it after ``worker_max_attempts``, as for any handler.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import httpx
import msgspec

from headwater.config import Settings
from headwater.events.event import Event, Handler, Subscription

SIGNATURE = "X-Headwater-Signature"
_encode = msgspec.json.Encoder().encode


class _Spec(msgspec.Struct, forbid_unknown_fields=True):
    url: str
    pattern: str | list[str] = "#"
    secret: str | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Webhook:
    name: str
    patterns: tuple[str, ...]
    url: str
    secret: str


def parse_webhooks(settings: Settings) -> list[Webhook]:
    if not settings.webhooks.strip():
        return []
    try:
        specs = msgspec.json.decode(settings.webhooks, type=list[_Spec])
    except msgspec.DecodeError as exc:
        raise ValueError(f"HEADWATER_WEBHOOKS is not valid: {exc}") from exc
    out = []
    for i, s in enumerate(specs):
        patterns = (s.pattern,) if isinstance(s.pattern, str) else tuple(s.pattern)
        out.append(Webhook(s.name or f"webhook-{i}", patterns, s.url,
                           s.secret if s.secret is not None else settings.webhook_secret))
    return out


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """For receivers (and tests): constant-time check of a signature header."""
    return hmac.compare_digest(sign(secret, body), header)


def webhook_handler(hook: Webhook, client: httpx.AsyncClient) -> Handler:
    async def post(event: Event) -> None:
        body = _encode(event)
        response = await client.post(hook.url, content=body, headers={
            "Content-Type": "application/json",
            SIGNATURE: sign(hook.secret, body),
            "X-Headwater-Event": event.routing_key,
            "X-Headwater-Event-Id": event.id,
        })
        response.raise_for_status()

    return post


def webhook_subscriptions(settings: Settings, client: httpx.AsyncClient) -> list[Subscription]:
    return [Subscription("webhook." + h.name, h.patterns, webhook_handler(h, client))
            for h in parse_webhooks(settings)]
