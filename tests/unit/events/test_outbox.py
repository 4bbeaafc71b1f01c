"""The outbox's filters: which tables and operations make events, and which carry old rows."""

from __future__ import annotations

from headwater.config import Settings
from headwater.events.outbox import Outbox
from headwater.events.recording import Recorder


def test_filters_choose_tables_and_operations() -> None:
    s = Settings(events_include="orders.*,customers.insert", events_exclude="orders.delete",
                 events_old_rows="orders")
    box = Recorder(Outbox(s, "sqlite", None))
    assert box.wants("orders", "insert") and box.wants("orders", "update")
    assert not box.wants("orders", "delete")
    assert box.wants("customers", "insert") and not box.wants("customers", "update")
    assert not box.wants("products", "insert")
    assert box.wants_old("orders") and not box.wants_old("customers")
    off = Recorder(Outbox(Settings(events_enabled=False), "sqlite", None))
    assert not off.wants("orders", "insert")
    assert Recorder(Outbox(Settings(events_old_rows="*"), "sqlite", None)).wants_old("anything")
