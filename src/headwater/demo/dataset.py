"""The demo data set: a small shop (customers, products, orders, order items and a view).

The same seed and scale give the same rows on SQLite and on PostgreSQL, so a demo, a test or a
benchmark can be compared across the two. Rows come from one ``random.Random(seed)`` consumed in
a fixed order and are produced lazily in batches, so memory stays bounded at any scale.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import secrets
import sqlite3
import stat
import unicodedata
from array import array
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, Protocol, TypeVar

if TYPE_CHECKING:  # asyncpg is the postgres extra: imported only for a postgresql:// target
    import asyncpg

from headwater.demo.schema import (
    CUSTOMERS,
    INDEXES,
    ORDER_ITEMS,
    ORDERS,
    POSTGRES,
    PRODUCTS,
    SQLITE,
    TABLES,
    VIEW,
    ColumnKind,
    DemoTable,
)
from headwater.errors import DemoTargetBusy, DemoTargetExists, InvalidSetting

ProgressFn = Callable[[str, int, int], None]
"""Called as ``(table, rows_done, rows_total)`` after each batch; the last call per table has
``rows_done == rows_total``."""

Row = tuple[object, ...]
_T = TypeVar("_T")


@dataclass(frozen=True)
class DemoCounts:
    customers: int
    products: int
    orders: int
    order_items: int


# Ids are 32-bit INTEGER columns on PostgreSQL.
_MAX_ROWS = 2**31 - 1


def counts_for_scale(scale: float) -> DemoCounts:
    """Row counts for ``scale``: 1 is about 10,000 order items, 100 about a million."""
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a positive number, not {scale!r}")
    orders = max(1, round(2_500 * scale))
    counts = DemoCounts(
        customers=max(1, round(500 * scale)),
        # A catalogue stays small at every scale; tiny scales keep enough to sample from.
        products=min(200, max(20, round(200 * scale))),
        orders=orders,
        # Every order has at least one item, so its total is never a vacuous 0.
        order_items=max(orders, round(10_000 * scale)),
    )
    if counts.order_items > _MAX_ROWS:
        raise ValueError(f"scale {scale} needs more rows than 32-bit ids allow")
    return counts


# --- the rows -------------------------------------------------------------------------------

# Showcase rows come first so even the tiniest scale has the awkward cases: accents, a name
# that is not Latin at all, an apostrophe, a single name, an emoji outside the BMP.
_SHOWCASE_NAMES = ("Zoë Ångström", "José Núñez", "李雷", "Øyvind", "Renée O'Connor",
                   "Ada Lovelace 🚀")
_FIRST_NAMES = ("Ana", "Ben", "Chloé", "David", "Elena", "Farid", "Greta", "Hiroshi", "Inés",
                "Jonas", "Katarzyna", "Liam", "Mei", "Nikolai", "Olivia", "Pál", "Quentin",
                "Rosa", "Søren", "Tomás", "Ugo", "Valentina", "Wiktor", "Xiadani", "Yusuf",
                "Zoë", "Amélie", "Björn", "Łukasz", "François")
_LAST_NAMES = ("Smith", "García", "Müller", "Rossi", "Dubois", "Kowalski", "Nakamura",
               "Johansson", "Dvořák", "Núñez", "O'Brien", "Ångström", "Petrović", "Silva",
               "Nguyễn", "Kaya", "Andersen", "Fernández", "Łęcki", "Øberg", "Brown", "Schäfer")
_CJK_NAMES = ("李雷", "韩梅梅", "王芳", "山田太郎", "佐藤花子", "김민준", "이서연")
_EMOJI = ("🚀", "🌻", "🦊", "🎸", "☕", "🌊")
_DOMAINS = ("example.com", "example.org", "example.net")
_COUNTRIES = ("US", "GB", "DE", "FR", "ES", "IT", "NL", "SE", "NO", "DK", "PL", "CZ", "JP",
              "CN", "KR", "BR", "MX", "CA", "AU", "IN", "NG", "ZA", "TR", "PT")
# Letters NFKD does not decompose into ASCII.
_TRANSLIT = MappingProxyType(str.maketrans({"ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "ß": "ss",
                                            "æ": "ae", "Æ": "AE", "đ": "d", "Đ": "D"}))

_ADJECTIVES = ("Classic", "Deluxe", "Compact", "Rustic", "Nordic", "Über", "Vintage",
               "Artisanal", "Smart", "Mini", "Pro", "Eco", "Royal", "Zen", "Fiesta", "Bistro")
_NOUNS = ("Espresso Cup", "Crème Brûlée Torch", "Jalapeño Grinder", "Smörgåsbord Tray",
          "Piñata", "Matcha Whisk 抹茶", "Desk Lamp", "Backpack", "Water Bottle", "Notebook",
          "Headphones", "Façade Clock", "Teapot", "Cutting Board", "Umbrella", "Kimono 着物")
_SKU_PREFIXES = ("KIT", "HOM", "OUT", "OFC", "AUD", "GFT")
_COLORS = ("red", "green", "blue", "black", "white", "oak", "crème", "slate")
_TAGS = ("new", "sale", "gift", "eco", "bestseller", "limited", "café", "handmade")
_NOTES = ("Please leave at the door.", "Gift wrap, please 🎁", "Bitte nicht knicken.",
          "Livraison après 18h.", "请尽快发货", "Call on arrival.", "¡Gracias!")

_EPOCH = datetime(2023, 1, 1)
_CUSTOMERS_UNTIL = int((datetime(2025, 10, 1) - _EPOCH).total_seconds())
# Leaves room for a shipping date within 2025.
_ORDERS_UNTIL = int((datetime(2025, 12, 21) - _EPOCH).total_seconds())
_RELEASE_DAYS = (date(2025, 12, 31) - _EPOCH.date()).days + 1
_MAX_SHIPPING_DAYS = 10

_ROWS_PER_BATCH = 5_000
_ORDERS_PER_BATCH = 1_250  # with their items, about 5,000 item rows


def _money(cents: int) -> Decimal:
    # scaleb keeps the exponent, so 500 cents is Decimal('5.00'), never Decimal('5').
    return Decimal(cents).scaleb(-2)


def _email_local(name: str) -> str:
    ascii_name = unicodedata.normalize("NFKD", name.translate(_TRANSLIT))
    words = ["".join(ch for ch in word if ch.isascii() and ch.isalnum())
             for word in ascii_name.lower().split()]
    return ".".join(w for w in words if w) or "customer"


def _compact_json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


class _Draws:
    """Draws built on ``random()`` alone.

    Python promises the ``random()`` sequence for a given seed across versions; it does not
    promise that for ``randrange``, ``choice``, ``sample`` or ``shuffle``. Building on it keeps
    a seed's demo the same after an interpreter upgrade.
    """

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed).random

    def below(self, n: int) -> int:
        return int(self.random() * n)

    def between(self, low: int, high: int) -> int:
        return low + self.below(high - low + 1)

    def chance(self, p: float) -> bool:
        return self.random() < p

    def pick(self, items: Sequence[_T]) -> _T:
        return items[self.below(len(items))]

    def some(self, items: Sequence[_T], k: int) -> list[_T]:
        chosen: list[int] = []
        while len(chosen) < min(k, len(items)):
            i = self.below(len(items))
            if i not in chosen:
                chosen.append(i)
        return [items[i] for i in chosen]

    def shuffled(self, items: Sequence[_T]) -> list[_T]:
        out = list(items)
        for i in range(len(out) - 1, 0, -1):
            j = self.below(i + 1)
            out[i], out[j] = out[j], out[i]
        return out


class _Rows:
    """The rows, table by table; customers and products must be drawn before orders."""

    def __init__(self, counts: DemoCounts, seed: int) -> None:
        self._counts = counts
        self._draw = _Draws(seed)
        # Orders need each customer's signup time and each product's price; both are small.
        self._customer_since = array("q")
        self._price_cents = array("q")

    def customers(self) -> Iterator[Row]:
        draw, n = self._draw, self._counts.customers
        step = max(1, _CUSTOMERS_UNTIL // n)
        for cid in range(1, n + 1):
            # Signup times rise with the id, so a referrer always joined before the referred.
            since = (cid - 1) * _CUSTOMERS_UNTIL // n + draw.below(step)
            self._customer_since.append(since)
            if cid <= len(_SHOWCASE_NAMES):
                name = _SHOWCASE_NAMES[cid - 1]
            elif draw.chance(0.08):
                name = draw.pick(_CJK_NAMES)
            else:
                name = f"{draw.pick(_FIRST_NAMES)} {draw.pick(_LAST_NAMES)}"
                if draw.chance(0.02):
                    name = f"{name} {draw.pick(_EMOJI)}"
            email = f"{_email_local(name)}.{cid}@{draw.pick(_DOMAINS)}"
            country = None if draw.chance(0.1) else draw.pick(_COUNTRIES)
            is_active = draw.chance(0.9)
            referred_by = draw.between(1, cid - 1) if cid > 1 and draw.chance(0.2) else None
            yield (cid, name, email, country, _EPOCH + timedelta(seconds=since), is_active,
                   referred_by)

    def products(self) -> Iterator[Row]:
        draw = self._draw
        names = draw.shuffled([f"{a} {n}" for a in _ADJECTIVES for n in _NOUNS])
        for pid in range(1, self._counts.products + 1):
            tier = draw.random()
            dollars = (draw.between(2, 29) if tier < 0.5 else
                       draw.between(30, 149) if tier < 0.85 else draw.between(150, 499))
            cents = dollars * 100 + draw.pick((99, 95, 49, 0))
            self._price_cents.append(cents)
            sku = f"HW-{draw.pick(_SKU_PREFIXES)}-{pid:05d}"
            weight = None if draw.chance(0.15) else draw.between(50, 30_000) / 1000
            in_stock = draw.chance(0.88)
            released = (None if draw.chance(0.1)
                        else _EPOCH.date() + timedelta(days=draw.below(_RELEASE_DAYS)))
            attributes = None
            if not draw.chance(0.25):
                attrs: dict[str, object] = {
                    "color": draw.pick(_COLORS),
                    "tags": draw.some(_TAGS, draw.between(0, 3)),
                }
                if draw.chance(0.3):
                    attrs["dimensions_cm"] = {"w": draw.between(5, 80), "h": draw.between(5, 80)}
                attributes = _compact_json(attrs)
            yield (pid, names[pid - 1], sku, _money(cents), weight, in_stock, released,
                   attributes)

    def orders(self) -> Iterator[tuple[Row, list[Row]]]:
        """Each order with its items; the order's total is the sum of its items."""
        n_orders, n_items = self._counts.orders, self._counts.order_items
        n_customers, n_products = self._counts.customers, self._counts.products
        if len(self._customer_since) != n_customers or len(self._price_cents) != n_products:
            raise RuntimeError("customers and products must be drawn before orders")
        most_items = max(1, math.ceil(2 * n_items / n_orders - 1))
        if most_items > n_products:
            raise ValueError("more items per order than there are products")
        # Items only ever cost a product's price or its 10%-off price (half-up to the cent),
        # so both are made once; a Decimal per item row would be a good part of the run time.
        full = [(c, _money(c)) for c in self._price_cents]
        discounted = [((c * 9 + 5) // 10, _money((c * 9 + 5) // 10)) for c in self._price_cents]
        # The hot loop inlines _Draws (int(rand() * n)): method calls would double its cost.
        rand = self._draw.random
        items_done = 0
        item_id = 0
        for oid in range(1, n_orders + 1):
            # Steer towards the exact item count: aiming at the running target plus a bounded
            # wobble never drifts, so the last orders are as varied as the first.
            target = oid * n_items // n_orders
            orders_left = n_orders - oid
            items_left = n_items - items_done
            low = max(1, items_left - orders_left * most_items)
            high = min(most_items, items_left - orders_left)
            k = min(high, max(low, target - items_done + int(rand() * 5) - 2))

            # The smaller of two draws favours older customers, who have had longer to shop.
            cid = 1 + int(min(rand(), rand()) * n_customers)
            since = self._customer_since[cid - 1]
            ordered_at = _EPOCH + timedelta(seconds=since + int(rand() * (_ORDERS_UNTIL - since)))
            draw = rand()
            status = ("shipped" if draw < 0.45 else "paid" if draw < 0.75 else
                      "pending" if draw < 0.9 else "cancelled")
            shipped_on = (ordered_at.date() + timedelta(days=1 + int(rand() * _MAX_SHIPPING_DAYS))
                          if status == "shipped" else None)
            note = _NOTES[int(rand() * len(_NOTES))] if rand() < 0.07 else None

            items: list[Row] = []
            picked: list[int] = []
            total = 0
            while len(picked) < k:
                pid = 1 + int(rand() * n_products)
                if pid in picked:
                    continue  # distinct products per order; k is small, so this is cheap
                picked.append(pid)
                draw = rand()
                quantity = (1 if draw < 0.62 else 2 if draw < 0.85 else 3 if draw < 0.94
                            else 4 + int(rand() * 6))
                cents, price = discounted[pid - 1] if rand() < 0.12 else full[pid - 1]
                total += quantity * cents
                item_id += 1
                items.append((item_id, oid, pid, quantity, price))
            items_done += k
            yield (oid, cid, status, ordered_at, shipped_on, note, _money(total)), items


def _batches(counts: DemoCounts, seed: int) -> Iterator[tuple[DemoTable, list[Row]]]:
    rows = _Rows(counts, seed)
    for table, stream in ((CUSTOMERS, rows.customers()), (PRODUCTS, rows.products())):
        batch: list[Row] = []
        for row in stream:
            batch.append(row)
            if len(batch) == _ROWS_PER_BATCH:
                yield table, batch
                batch = []
        if batch:
            yield table, batch
    orders: list[Row] = []
    items: list[Row] = []
    for order, its in rows.orders():
        orders.append(order)
        items.extend(its)
        if len(orders) == _ORDERS_PER_BATCH:
            yield ORDERS, orders
            yield ORDER_ITEMS, items
            orders, items = [], []
    if orders:
        yield ORDERS, orders
        yield ORDER_ITEMS, items


class _Sink(Protocol):
    async def write(self, table: DemoTable, rows: list[Row]) -> None: ...


async def _load(sink: _Sink, counts: DemoCounts, seed: int, progress: ProgressFn | None) -> None:
    totals = {"customers": counts.customers, "products": counts.products,
              "orders": counts.orders, "order_items": counts.order_items}
    done = dict.fromkeys(totals, 0)
    batches = _batches(counts, seed)
    # The next batch is drawn in a worker thread while the database takes the current one, so
    # generating and loading overlap instead of taking turns.
    upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
    try:
        while (batch := await upcoming) is not None:
            upcoming = asyncio.ensure_future(asyncio.to_thread(next, batches, None))
            table, rows = batch
            await sink.write(table, rows)
            done[table.name] += len(rows)
            if progress is not None:
                progress(table.name, done[table.name], totals[table.name])
    finally:
        # On failure, let the worker finish with the generator before it can be closed, and
        # collect its outcome: the error being raised already is the one to report.
        if not upcoming.done():
            await asyncio.wait([upcoming])
        if not upcoming.cancelled():
            upcoming.exception()
    if done != totals:
        raise RuntimeError(f"generated {done}, expected {totals}")


# --- PostgreSQL -----------------------------------------------------------------------------

_PG_CONNECT_TIMEOUT = 10.0
# Replacing the tables waits for an exclusive lock; a stuck reader must not make it hang.
_PG_LOCK_TIMEOUT = "10s"


class _PostgresSink:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self._conn = conn

    async def write(self, table: DemoTable, rows: list[Row]) -> None:
        await self._conn.copy_records_to_table(
            table.name, records=rows, columns=table.column_names, schema_name="public")


async def _build_postgres(dsn: str, counts: DemoCounts, seed: int,
                          progress: ProgressFn | None, *, force: bool) -> None:
    from headwater.config import require_extra

    require_extra("postgres", "a postgresql:// target")
    import asyncpg

    conn = await asyncpg.connect(dsn, timeout=_PG_CONNECT_TIMEOUT)
    try:
        names = [t.name for t in TABLES] + ["customer_totals"]
        existing = [r[0] for r in await conn.fetch(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relname = ANY($1::text[]) ORDER BY 1", names)]
        if existing and not force:
            raise DemoTargetExists(
                f"the database already has {', '.join(existing)}: the demo writes new tables; "
                "give an empty database, or --force to drop and replace those")
        # One transaction: readers see the old demo until the new one is complete.
        async with conn.transaction():
            await conn.execute("SET LOCAL search_path TO public")
            await conn.execute(f"SET LOCAL lock_timeout TO '{_PG_LOCK_TIMEOUT}'")
            await conn.execute("DROP VIEW IF EXISTS customer_totals CASCADE")
            await conn.execute("DROP TABLE IF EXISTS "
                               + ", ".join(t.name for t in reversed(TABLES)) + " CASCADE")
            for table in TABLES:
                await conn.execute(table.create_sql(POSTGRES, inline_foreign_keys=False))
            await _load(_PostgresSink(conn), counts, seed, progress)
            # Checking foreign keys and building indexes once over the loaded rows is far
            # cheaper than row by row during COPY.
            for table in TABLES:
                for fk in table.foreign_keys:
                    await conn.execute(
                        f"ALTER TABLE {table.name} ADD {fk.constraint_sql(table.name)}")
            for index in INDEXES:
                await conn.execute(index)
            await conn.execute(VIEW)
            for table in TABLES:
                # Explicit ids bypass the identity sequences; later inserts must not collide.
                await conn.execute(
                    f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), max(id)) "
                    f"FROM {table.name}")
            await conn.execute("ANALYZE " + ", ".join(t.name for t in TABLES))
    finally:
        await conn.close()


# --- SQLite ---------------------------------------------------------------------------------

_SQLITE_BUSY_TIMEOUT = 2.0


def _sqlite_converters(table: DemoTable) -> tuple[tuple[int, Callable[[object], object]], ...]:
    def iso(value: object) -> object:
        assert isinstance(value, date)  # datetime is a date too
        return value.isoformat()

    def number_text(value: object) -> object:
        # Text, not float: the NUMERIC column parses the exact decimal digits itself.
        return str(value)

    def flag(value: object) -> object:
        return int(bool(value))

    by_kind: dict[ColumnKind, Callable[[object], object]] = {
        "timestamp": iso, "date": iso, "decimal": number_text, "bool": flag}
    return tuple((i, by_kind[c.kind]) for i, c in enumerate(table.columns) if c.kind in by_kind)


class _SqliteSink:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def write(self, table: DemoTable, rows: list[Row]) -> None:
        converters = _sqlite_converters(table)
        placeholders = ", ".join("?" * len(table.columns))
        sql = (f"INSERT INTO {table.name} ({', '.join(table.column_names)}) "
               f"VALUES ({placeholders})")

        def adapt(row: Row) -> Row:
            values = list(row)
            for i, convert in converters:
                if values[i] is not None:
                    values[i] = convert(values[i])
            return tuple(values)

        def insert() -> None:
            # Closed here, in this thread: a cursor left to die elsewhere resets the cached
            # statement that the next batch's executemany may be running (SQLITE_MISUSE).
            self._conn.executemany(sql, map(adapt, rows)).close()

        await asyncio.to_thread(insert)


def _sqlite_path(rest: str) -> str:
    path = rest.split("?", 1)[0]
    if not path or path == ":memory:":
        raise ValueError("the demo needs a SQLite file path, e.g. sqlite:///demo.db")
    return os.path.abspath(path)


def _sqlite_create(conn: sqlite3.Connection) -> None:
    # A half-built file is thrown away, so durability and rollback buy nothing during the load.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for table in TABLES:
        conn.execute(table.create_sql(SQLITE, inline_foreign_keys=True))


def _sqlite_finish(conn: sqlite3.Connection) -> None:
    for index in INDEXES:
        conn.execute(index)
    conn.execute(VIEW)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    conn.execute("PRAGMA journal_mode=WAL")


def _retire(path: str) -> None:
    """Make the old file safe to replace, or refuse if someone has it open.

    A leftover ``-wal`` (or hot ``-journal``) next to the new file would be replayed into it and
    corrupt it. Leaving WAL mode folds the log back in and deletes it, and SQLite refuses that
    while another connection is open, which is exactly the case where replacing is unsafe.
    """
    if os.path.exists(path):
        try:
            conn = sqlite3.connect(path, timeout=_SQLITE_BUSY_TIMEOUT)
            try:
                conn.execute("PRAGMA journal_mode=DELETE")
            finally:
                conn.close()
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise DemoTargetBusy(
                    f"{path} is in use", hint="Stop whatever has it open, then retry.",
                ) from exc
            raise
        except sqlite3.DatabaseError:
            pass  # not a SQLite database: nothing of it can leak into the new file
    for suffix in ("-wal", "-shm", "-journal"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)


def _fsync(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sqlite_install(tmp: str, path: str) -> None:
    # The load ran with synchronous=OFF; the data must be on disk before the rename is.
    _fsync(tmp)
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))  # a rebuild keeps the old permissions
    _retire(path)
    os.replace(tmp, path)
    if os.name == "posix":
        _fsync(os.path.dirname(path))


def _remove_quietly(paths: Sequence[str]) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


async def _build_sqlite(path: str, counts: DemoCounts, seed: int,
                        progress: ProgressFn | None) -> None:
    # Built beside the target so the final os.replace is a same-filesystem, atomic rename.
    directory, name = os.path.split(path)
    # Not mkstemp: its 0600 mode would lock out a server running as another user. SQLite
    # creates the file under the umask, as it would have created the target itself.
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(8)}.building")
    installed = False
    try:
        # The connection is used from worker threads one call at a time, never concurrently.
        conn = await asyncio.to_thread(
            sqlite3.connect, tmp, isolation_level=None, check_same_thread=False)
        try:
            await asyncio.to_thread(_sqlite_create, conn)
            await _load(_SqliteSink(conn), counts, seed, progress)
            await asyncio.to_thread(_sqlite_finish, conn)
        finally:
            await asyncio.to_thread(conn.close)
        await asyncio.to_thread(_sqlite_install, tmp, path)
        installed = True
    finally:
        if not installed:
            _remove_quietly([tmp + s for s in ("", "-journal", "-wal", "-shm")])


# --- entry point ----------------------------------------------------------------------------

def _refuse_existing_file(path: str) -> None:
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise DemoTargetExists(f"cannot write the demo to {path}: no directory {directory}")
    if os.path.isdir(path):
        raise DemoTargetExists(f"cannot write the demo to {path}: it is a directory; give a "
                               "new file's path")
    if os.path.lexists(path):
        raise DemoTargetExists(f"{path} exists: the demo writes a new file; give another path, "
                               "or --force to replace it")


def _target(url: str) -> tuple[Literal["sqlite", "postgresql"], str]:
    for prefix in ("sqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            return "sqlite", _sqlite_path(url[len(prefix):])
    scheme, sep, rest = url.partition("://")
    if sep and scheme in ("postgresql", "postgres", "postgresql+asyncpg"):
        return "postgresql", f"postgresql://{rest}"
    # Only the scheme: the rest of a URL may hold a password.
    raise InvalidSetting(f"unsupported database URL scheme {scheme!r}; "
                     "use sqlite:///path.db or postgresql://user@host:port/dbname")


async def build_demo(url: str, *, scale: float = 1.0, seed: int = 7,
                     progress: ProgressFn | None = None, force: bool = False) -> DemoCounts:
    """Write the demo tables at ``url`` and return their counts. An existing file, or on
    PostgreSQL any of the demo's tables, is a ``DemoTargetExists`` unless ``force``: then
    the file, or those tables, are replaced with freshly generated ones.

    ``url`` is ``sqlite:///path.db`` (relative to the working directory; ``sqlite:////abs``
    for an absolute path) or ``postgresql://user@host:port/dbname``. The same ``seed`` and
    ``scale`` always give the same rows, on either database.
    """
    counts = counts_for_scale(scale)
    kind, target = _target(url)
    if kind == "sqlite":
        if not force:
            _refuse_existing_file(target)
        await _build_sqlite(target, counts, seed, progress)
    else:
        await _build_postgres(target, counts, seed, progress, force=force)
    return counts
