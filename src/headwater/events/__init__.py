"""Transactional events: outbox table → relay → RabbitMQ or the in-process bus → handlers.

A write records one event per row in ``_headwater_outbox`` inside its own transaction
(``recording``; the tables and the relay's side of them: ``outbox``); the ``relay`` publishes
committed rows in order to a ``bus`` (``memory_bus`` or ``rabbitmq_bus``) and marks them sent
after the broker confirms them; ``worker`` runs ``@app.on`` handlers with retries, a
dead-letter queue and a processed-ids table so each event's effects happen once; ``webhook``
is a built-in handler kind. ``runtime`` assembles these for the server.
"""

from headwater.events.event import Event, Subscription, topic_matches

__all__ = ["Event", "Subscription", "topic_matches"]
