"""The fixture schema both client suites run against: users, channels, messages, a table of
typed columns and a table for writes, on PostgreSQL and (the subset that applies) SQLite.

Rows the write scenarios change are their own (``notes``, and the messages of channels 3
and 4), so the read scenarios' expectations hold whatever order the suite runs in.
"""

from __future__ import annotations

from typing import Any

POSTGRES = r"""
CREATE TYPE user_status AS ENUM ('ONLINE', 'OFFLINE');
CREATE TYPE mood AS ENUM ('happy', 'sad', 'ok');

CREATE TABLE users (
  id int PRIMARY KEY,
  username text NOT NULL UNIQUE,
  status user_status NOT NULL DEFAULT 'OFFLINE',
  age int,
  bio text,
  catchphrase tsvector
);
CREATE TABLE channels (
  id int PRIMARY KEY,
  slug text NOT NULL UNIQUE,
  owner_id int NOT NULL REFERENCES users (id)
);
CREATE TABLE messages (
  id int PRIMARY KEY,
  channel_id int NOT NULL REFERENCES channels (id),
  author_id int NOT NULL REFERENCES users (id),
  reviewer_id int REFERENCES users (id),
  body text NOT NULL,
  inserted_at timestamptz NOT NULL
);
CREATE TABLE kitchen (
  id int PRIMARY KEY,
  doc jsonb,
  tags text[],
  nums int[],
  span int4range,
  feeling mood,
  at timestamptz,
  day date,
  amount numeric(10, 2),
  blob bytea,
  flag boolean
);
CREATE TABLE notes (
  id serial PRIMARY KEY,
  slug text NOT NULL UNIQUE,
  body text,
  votes int NOT NULL DEFAULT 0
);
CREATE TABLE channel_members (
  user_id int NOT NULL REFERENCES users (id),
  channel_id int NOT NULL REFERENCES channels (id),
  PRIMARY KEY (user_id, channel_id)
);
CREATE TABLE categories (
  id int PRIMARY KEY,
  name text NOT NULL,
  parent_id int REFERENCES categories (id)
);
CREATE VIEW online_users AS SELECT id, username, age FROM users WHERE status = 'ONLINE';

CREATE SCHEMA personal;
CREATE TABLE personal.diary (id int PRIMARY KEY, entry text NOT NULL);
INSERT INTO personal.diary VALUES (1, 'dear diary');

CREATE FUNCTION get_status(name_param text) RETURNS user_status LANGUAGE sql STABLE
  AS $$ SELECT status FROM users WHERE username = name_param $$;
CREATE FUNCTION users_older_than(min_age int) RETURNS SETOF users LANGUAGE sql STABLE
  AS $$ SELECT * FROM users WHERE age > min_age $$;
CREATE FUNCTION add_vote(note_slug text) RETURNS int LANGUAGE sql VOLATILE
  AS $$ UPDATE notes SET votes = votes + 1 WHERE slug = note_slug RETURNING votes $$;
"""

SQLITE = r"""
CREATE TABLE users (
  id INTEGER PRIMARY KEY,
  username TEXT NOT NULL UNIQUE,
  status TEXT NOT NULL DEFAULT 'OFFLINE' CHECK (status IN ('ONLINE', 'OFFLINE')),
  age INTEGER,
  bio TEXT,
  catchphrase TEXT
);
CREATE TABLE channels (
  id INTEGER PRIMARY KEY,
  slug TEXT NOT NULL UNIQUE,
  owner_id INTEGER NOT NULL REFERENCES users (id)
);
CREATE TABLE messages (
  id INTEGER PRIMARY KEY,
  channel_id INTEGER NOT NULL REFERENCES channels (id),
  author_id INTEGER NOT NULL REFERENCES users (id),
  reviewer_id INTEGER REFERENCES users (id),
  body TEXT NOT NULL,
  inserted_at TIMESTAMP NOT NULL
);
CREATE TABLE kitchen (
  id INTEGER PRIMARY KEY,
  doc JSON,
  tags JSON,
  nums JSON,
  feeling TEXT CHECK (feeling IN ('happy', 'sad', 'ok')),
  at TIMESTAMP,
  day DATE,
  amount NUMERIC(10, 2),
  flag BOOLEAN
);
CREATE TABLE notes (
  id INTEGER PRIMARY KEY,
  slug TEXT NOT NULL UNIQUE,
  body TEXT,
  votes INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE channel_members (
  user_id INTEGER NOT NULL REFERENCES users (id),
  channel_id INTEGER NOT NULL REFERENCES channels (id),
  PRIMARY KEY (user_id, channel_id)
);
CREATE TABLE categories (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL,
  parent_id INTEGER REFERENCES categories (id)
);
CREATE VIEW online_users AS SELECT id, username, age FROM users WHERE status = 'ONLINE';
"""

USERS: list[tuple[Any, ...]] = [
    # id, username, status, age, bio, catchphrase
    (1, "alice", "ONLINE", 30, "Loves cats and dogs", "fat cat sat"),
    (2, "bob", "OFFLINE", 25, "Enjoys hiking", "cat chased dog"),
    (3, "carol", "ONLINE", 41, None, "hello world"),
    (4, "dave", "OFFLINE", 19, "cat person", None),
    (5, "eve", "ONLINE", None, "100% security", "dog days"),
]
CHANNELS = [(1, "general", 1), (2, "random", 2), (3, "safety-update", 1),
            (4, "safety-delete", 1), (5, "quiet", 3)]
MESSAGES: list[tuple[Any, ...]] = [
    # id, channel_id, author_id, reviewer_id, body, inserted_at
    (1, 1, 1, 2, "Hello World", "2024-01-01T10:00:00+00:00"),
    (2, 2, 2, None, "Perfection is attained", "2024-01-02T10:00:00+00:00"),
    (3, 1, 3, 1, "hi all", "2024-01-03T10:00:00+00:00"),
    (4, 1, 2, None, "another one", "2024-01-04T10:00:00+00:00"),
    (5, 3, 1, None, "update me A", "2024-01-05T10:00:00+00:00"),
    (6, 3, 2, None, "update me B", "2024-01-06T10:00:00+00:00"),
    (7, 4, 1, None, "delete me A", "2024-01-07T10:00:00+00:00"),
    (8, 4, 3, None, "delete me B", "2024-01-08T10:00:00+00:00"),
]
#: id, doc, tags, nums, span (PostgreSQL only), feeling, at, day, amount, blob (PG only), flag
KITCHEN: list[tuple[Any, ...]] = [
    (1, '{"color": "red", "size": {"w": 2}, "list": [1, 2]}', ["a", "b"], [1, 2, 3], "[1,5)",
     "happy", "2024-05-01T12:00:00+00:00", "2024-05-01", "10.50", b"\x01\x02", True),
    (2, '{"color": "blue", "size": {"w": 5}}', ["b", "c"], [4], "[10,20)",
     "sad", "2024-06-01T08:30:00+00:00", "2024-06-01", "99.99", None, False),
    (3, None, [], None, None, "ok", None, None, None, None, None),
]
#: slug, body: one row per write scenario, named after it
NOTES = [("seed-update", "old"), ("seed-count-a", None), ("seed-count-b", None),
         ("seed-delete", "bye"), ("seed-del-a", None), ("seed-del-b", None),
         ("seed-upsert", "orig"), ("seed-single", None), ("seed-vote", None)]
CATEGORIES = [(1, "root", None), (2, "child a", 1), (3, "child b", 1), (4, "grandchild", 2)]
MEMBERS = [(1, 1), (1, 2), (2, 1), (3, 5)]


def _sql_literal(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def sqlite_script() -> str:
    """The SQLite schema and its rows as one script (arrays stored as JSON arrays)."""
    import json

    out = [SQLITE]

    def insert(table: str, rows: list[tuple[Any, ...]]) -> None:
        for r in rows:
            out.append(f"INSERT INTO {table} VALUES ({', '.join(_sql_literal(v) for v in r)});")

    insert("users", USERS)
    insert("channels", CHANNELS)
    insert("messages", MESSAGES)
    insert("categories", CATEGORIES)
    insert("channel_members", MEMBERS)
    out.extend(f"INSERT INTO notes (slug, body) VALUES ({_sql_literal(a)}, {_sql_literal(b)});"
               for a, b in NOTES)
    kitchen = [(k[0], k[1], json.dumps(k[2]), None if k[3] is None else json.dumps(k[3]),
                k[5], k[6], k[7], k[8], k[10]) for k in KITCHEN]
    insert("kitchen", kitchen)
    return "\n".join(out)


async def load_postgres(conn: Any) -> None:
    """Create the PostgreSQL schema and its rows on an asyncpg connection."""
    import datetime as dt
    from decimal import Decimal

    await conn.execute(POSTGRES)
    await conn.executemany(
        "INSERT INTO users VALUES ($1, $2, $3, $4, $5, to_tsvector('english', $6))",
        USERS)
    await conn.executemany("INSERT INTO channels VALUES ($1, $2, $3)", CHANNELS)
    await conn.executemany(
        "INSERT INTO messages VALUES ($1, $2, $3, $4, $5, $6)",
        [(*m[:5], dt.datetime.fromisoformat(m[5])) for m in MESSAGES])
    await conn.executemany("INSERT INTO categories VALUES ($1, $2, $3)", CATEGORIES)
    await conn.executemany("INSERT INTO channel_members VALUES ($1, $2)", MEMBERS)
    await conn.executemany("INSERT INTO notes (slug, body) VALUES ($1, $2)", NOTES)
    await conn.executemany(
        "INSERT INTO kitchen VALUES ($1, $2::text::jsonb, $3, $4, $5::text::int4range, $6::text::mood, "
        "$7, $8, "
        "$9, $10, $11)",
        [(k[0], k[1], k[2], k[3], k[4], k[5],
          None if k[6] is None else dt.datetime.fromisoformat(k[6]),
          None if k[7] is None else dt.date.fromisoformat(k[7]),
          None if k[8] is None else Decimal(k[8]), k[9], k[10]) for k in KITCHEN])
