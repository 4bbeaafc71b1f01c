"""SQLite's outbox triggers: a write tagged with its table and operation records one event per
row in its own statement; nothing else on the connection is recorded."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from headwater.config import Settings
from headwater.db.catalog import introspect
from headwater.db.database import Tag
from headwater.db.sqlite import SqliteDatabase
from headwater.errors import Conflict
from headwater.events.outbox import Outbox
from headwater.events.recording import Recorder
from headwater.model.catalog import Catalog

ALICE = '{"role":"alice"}'
BOB = '{"role":"bob"}'


class Setup:
    def __init__(self, db: SqliteDatabase, recorder: Recorder, catalog: Catalog) -> None:
        self.db = db
        self.recorder = recorder
        self.catalog = catalog

    async def write(self, sql: str, params: tuple[object, ...], tag: Tag | None) -> int:
        async with self.db.transaction(single=True) as tx:
            return await tx.execute(sql, params, tag)

    def events(self) -> list[dict[str, Any]]:
        conn = sqlite3.connect(self.db.path)
        try:
            rows = conn.execute("SELECT tbl, op, pk, new, old, principal, txid "
                                "FROM _headwater_outbox ORDER BY seq").fetchall()
        finally:
            conn.close()
        return [{"table": r[0], "op": r[1], "pk": json.loads(r[2]),
                 "new": r[3] and json.loads(r[3]), "old": r[4] and json.loads(r[4]),
                 "principal": json.loads(r[5]), "txid": r[6]} for r in rows]


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE parent (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                             active BOOLEAN NOT NULL DEFAULT 1, doc JSON);
        CREATE TABLE child (id INTEGER PRIMARY KEY,
                            parent_id INTEGER NOT NULL REFERENCES parent(id) ON DELETE CASCADE);
        CREATE TABLE quiet (id INTEGER PRIMARY KEY, v TEXT);
    """)
    conn.close()
    settings = Settings(database_url=f"sqlite:///{path}", events_exclude="quiet.*",
                        events_old_rows="parent")
    db = SqliteDatabase(settings)
    await db.start()
    catalog = await introspect(settings.database_url, settings.db_schema)
    recorder = Recorder(Outbox(settings, "sqlite", None))
    await recorder.outbox.ensure(db)  # made by the first write when serving
    await recorder.install_triggers(db, catalog)
    yield Setup(db, recorder, catalog)
    await db.close()


async def test_a_tagged_write_records_typed_rows_with_its_principal_and_txid(
        setup: Setup) -> None:
    assert setup.recorder.triggers("parent", "insert")
    assert not setup.recorder.triggers("quiet", "insert")  # excluded by settings
    n = await setup.write("INSERT INTO parent (name, doc) SELECT value, '{\"a\": [1]}' "
                          "FROM json_each(?)", ('["a", "b"]',), (ALICE, 7, "parent", "insert"))
    assert n == 2
    events = setup.events()
    assert [(e["op"], e["pk"]) for e in events] == [("insert", {"id": 1}), ("insert", {"id": 2})]
    # typed as the API reads rows: booleans as booleans, JSON columns as JSON
    assert events[0]["new"] == {"id": 1, "name": "a", "active": True, "doc": {"a": [1]}}
    assert {(e["principal"]["role"], e["txid"]) for e in events} == {("alice", 7)}

    await setup.write("UPDATE parent SET active = 0 WHERE id = 1", (), (BOB, 8, "parent",
                                                                       "update"))
    [update] = setup.events()[2:]
    assert update["old"]["active"] is True and update["new"]["active"] is False
    assert (update["principal"], update["txid"]) == ({"role": "bob"}, 8)


async def test_untagged_and_otherwise_tagged_writes_record_nothing(setup: Setup) -> None:
    await setup.write("INSERT INTO parent (name) VALUES ('p')", (), (ALICE, 1, "parent",
                                                                    "insert"))
    # right after a tagged write: an untagged one (a hook's SQL) is not taken for it
    await setup.write("INSERT INTO parent (name) VALUES ('hook')", (), None)
    # tagged for another table: the child's insert...
    await setup.write("INSERT INTO child (parent_id) VALUES (1)", (), (ALICE, 2, "child",
                                                                      "insert"))
    # ...and deleting the parent cascades to the child, which is not the statement's table
    await setup.write("DELETE FROM parent WHERE id = 1", (), (ALICE, 3, "parent", "delete"))
    await setup.write("INSERT INTO quiet (v) VALUES ('x')", (), None)
    got = [(e["table"], e["op"], e["txid"]) for e in setup.events()]
    assert got == [("parent", "insert", 1), ("child", "insert", 2), ("parent", "delete", 3)]


async def test_events_roll_back_with_their_write(setup: Setup) -> None:
    await setup.write("INSERT INTO parent (name) VALUES ('taken')", (), None)
    with pytest.raises(Conflict):
        await setup.write("INSERT INTO parent (name) VALUES ('taken')", (),
                          (ALICE, 1, "parent", "insert"))
    async with setup.db.transaction(rollback=True) as tx:  # as Prefer: tx=rollback
        await tx.execute("INSERT INTO parent (name) VALUES ('gone')", (),
                         (ALICE, 2, "parent", "insert"))
    assert setup.events() == []
    # the rollback also undid the tag: the same tag again must be set again
    await setup.write("INSERT INTO parent (name) VALUES ('after')", (),
                      (ALICE, 2, "parent", "insert"))
    assert [(e["new"]["name"], e["txid"]) for e in setup.events()] == [("after", 2)]


async def test_interleaved_writers_keep_their_own_principals(setup: Setup) -> None:
    async def one(i: int) -> None:
        who = ALICE if i % 2 else BOB
        tag = (who, i, "parent", "insert") if i % 3 else None
        await setup.write("INSERT INTO parent (name) VALUES (?)", (f"n{i}",), tag)

    await asyncio.gather(*(one(i) for i in range(300)))
    events = setup.events()
    assert sorted(e["txid"] for e in events) == [i for i in range(300) if i % 3]
    for e in events:
        assert e["principal"]["role"] == ("alice" if e["txid"] % 2 else "bob")
        assert e["new"]["name"] == f"n{e['txid']}"


async def test_triggers_follow_the_catalog_and_survive_a_restart(setup: Setup) -> None:
    conn = sqlite3.connect(setup.db.path)
    conn.execute("ALTER TABLE parent ADD COLUMN note TEXT")
    conn.close()
    catalog = await introspect(setup.db.settings.database_url, setup.db.settings.db_schema)
    await setup.recorder.install_triggers(setup.db, catalog)  # as a catalog reload does
    await setup.db.close()
    await setup.db.start()
    await setup.write("INSERT INTO parent (name, note) VALUES ('n', 'hello')", (),
                      (ALICE, 1, "parent", "insert"))
    [event] = setup.events()
    assert event["new"]["note"] == "hello"
