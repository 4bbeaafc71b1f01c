"""Which view columns are a table's column: SQLite's SELECT parser (checked against what
SQLite itself returns through the view) and PostgreSQL's rule node tree."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from headwater.db.view_sources import follow, pg_target_origins, sqlite_view_sources

TABLES = {"t1": ["a", "b", "Mixed Case"], "t2": ["a", "d"], "t3": ["id", "t1_a"]}


def columns_of(name: str) -> Sequence[str] | None:
    for t, cols in TABLES.items():
        if t.lower() == name.lower():
            return cols
    return None


@pytest.mark.parametrize(("sql", "expected"), [
    ("CREATE VIEW v AS SELECT a, b FROM t1",
     [("t1", "a"), ("t1", "b")]),
    ("CREATE VIEW v AS SELECT x.a AS first, x.b second FROM t1 x",
     [("t1", "a"), ("t1", "b")]),
    ('CREATE VIEW "v" AS SELECT x."Mixed Case", [x].[b], `x`.`a` FROM main.t1 AS x;',
     [("t1", "Mixed Case"), ("t1", "b"), ("t1", "a")]),
    ("CREATE VIEW v AS SELECT T1.A FROM t1",  # names are blind to case, as in SQLite
     [("t1", "a")]),
    ("create view v(p, q) as select distinct y.d, x.b from t1 x left join t2 y on y.a = x.a "
     "where x.b > 1 group by y.d, x.b order by 1 limit 5",
     [("t2", "d"), ("t1", "b")]),
    ("CREATE VIEW v AS SELECT a FROM t1 JOIN t2 USING (a)",  # unqualified over two tables
     [None]),
    ("CREATE VIEW v AS SELECT x.a + 0, upper(x.b), count(*) AS n, 1, x.a COLLATE nocase "
     "FROM t1 x", [None, None, None, None, None]),
    ("CREATE VIEW v AS SELECT * FROM t1, t2",
     [("t1", "a"), ("t1", "b"), ("t1", "Mixed Case"), ("t2", "a"), ("t2", "d")]),
    ("CREATE VIEW v AS SELECT y.*, x.id FROM t3 x CROSS JOIN t2 y",
     [("t2", "a"), ("t2", "d"), ("t3", "id")]),
    ("CREATE VIEW v AS SELECT s.a, x.a FROM (SELECT a FROM t1) s, t1 x",
     [None, ("t1", "a")]),
    ("CREATE VIEW v AS SELECT (SELECT max(a) FROM t2), x.b FROM t1 x WHERE x.a IN "
     "(SELECT a FROM t2 UNION SELECT a FROM t1)", [None, ("t1", "b")]),
    # beyond the parser: no answer at all
    ("CREATE VIEW v AS SELECT a FROM t1 UNION SELECT a FROM t2", None),
    ("CREATE VIEW v AS WITH c AS (SELECT a FROM t1) SELECT a FROM c", None),
    ("CREATE VIEW v AS SELECT * FROM (SELECT a FROM t1)", None),
    ("CREATE VIEW v AS SELECT value FROM json_each('[1]')", None),
    ("CREATE VIEW v AS SELECT a FROM nope", None),
    ("CREATE VIEW v AS SELECT a FROM other.t1", None),
    ("CREATE VIEW v AS VALUES (1)", None),
    ("CREATE VIEW v AS SELECT 'unterminated", None),
])
def test_sqlite_view_sources(sql: str, expected: list[tuple[str, str] | None] | None) -> None:
    assert sqlite_view_sources(sql, columns_of) == expected


# --- property: every column the parser maps holds exactly that table column's values -----------

_ITEM_FORMS = ("{q}{c}", "{q}{c} AS o{i}", "{q}{c} o{i}", "upper({q}{c})", "{q}{c} || ''",
               "{q}{c} || '!' AS o{i}", "length({q}{c})", "'{c}'", "coalesce({q}{c}, 1)",
               "CAST({q}{c} AS TEXT)")


@st.composite
def views(draw: st.DrawFn) -> tuple[str, list[bool]]:
    """A random view over t1..t3 and, per output column, whether it is a plain reference
    the parser must follow."""
    names = draw(st.lists(st.sampled_from(sorted(TABLES)), min_size=1, max_size=3, unique=True))
    aliased = [draw(st.booleans()) for _ in names]
    refs = [f"x{k}" if a else n for k, (n, a) in enumerate(zip(names, aliased, strict=True))]
    from_parts = []
    for k, (n, a) in enumerate(zip(names, aliased, strict=True)):
        src = f"{n} {draw(st.sampled_from(['', 'AS ']))}x{k}" if a else n
        if k == 0:
            from_parts.append(src)
        else:
            join = draw(st.sampled_from([", ", " JOIN ", " LEFT JOIN ", " CROSS JOIN "]))
            on = " ON 1 = 1" if join.strip() in ("JOIN", "LEFT JOIN") else ""
            from_parts.append(f"{join}{src}{on}")
    items: list[str] = []
    plain: list[bool] = []
    for i in range(draw(st.integers(1, 5))):
        k = draw(st.integers(0, len(names) - 1))
        col = draw(st.sampled_from(TABLES[names[k]]))
        form = draw(st.sampled_from(_ITEM_FORMS))
        qualify = len(names) > 1 or draw(st.booleans())
        q = f"{refs[k]}." if qualify else ""
        c = f'"{col}"' if " " in col or draw(st.booleans()) else col
        items.append(form.format(q=q, c=c, i=i))
        plain.append(form in ("{q}{c}", "{q}{c} AS o{i}", "{q}{c} o{i}"))
    where = draw(st.sampled_from(["", " WHERE 1 = 1", " ORDER BY 1", " LIMIT 50"]))
    return f"CREATE VIEW v AS SELECT {', '.join(items)} FROM {''.join(from_parts)}{where}", plain


def _database() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    for t, cols in TABLES.items():
        db.execute(f"CREATE TABLE {t} (" + ", ".join(f'"{c}"' for c in cols) + ")")
        for row in range(3):
            db.execute(f"INSERT INTO {t} VALUES (" + ", ".join("?" for _ in cols) + ")",
                       [f"{t}.{c}:{row}" for c in cols])
    return db


@settings(max_examples=150, deadline=None)
@given(views())
def test_mapped_columns_hold_their_sources_values(view: tuple[str, list[bool]]) -> None:
    sql, plain = view
    db = _database()
    try:
        db.execute(sql)
        cur = db.execute("SELECT * FROM v")
        width = len(cur.description)
        rows = cur.fetchall()
        found = sqlite_view_sources(sql, columns_of)
        assert found is not None and len(found) == width
        assert [s is not None for s in found] == plain  # every plain reference, nothing else
        for i, src in enumerate(found):
            if src is None:
                continue
            table, col = src
            values = {r[0] for r in db.execute(f'SELECT "{col}" FROM {table}')}
            assert {r[i] for r in rows} <= values
    finally:
        db.close()


# --- PostgreSQL: the rule's node tree ------------------------------------------------------------

RULE = (
    '({QUERY :commandType 1 :rtable ({RANGETBLENTRY :eref {ALIAS :aliasname a :colnames '
    '("id" "we\\ ird")} :rtekind 1 :subquery {QUERY :commandType 1 :targetList ({TARGETENTRY '
    ':expr {VAR :varno 1} :resno 1 :resname inner :ressortgroupref 0 :resorigtbl 99 '
    ':resorigcol 7 :resjunk false})}}) :jointree {FROMEXPR :quals {SUBLINK :subselect {QUERY '
    ':targetList ({TARGETENTRY :resname nope :resorigtbl 98 :resorigcol 1 :resjunk false})}}} '
    ':targetList ({TARGETENTRY :expr {VAR :varno 3 :varattno 1} :resno 1 :resname id '
    ':ressortgroupref 0 :resorigtbl 17112 :resorigcol 1 :resjunk false} {TARGETENTRY :expr '
    '{VAR :varno 3} :resno 2 :resname A\\ id\\) :ressortgroupref 0 :resorigtbl 17112 '
    ':resorigcol 2 :resjunk false} {TARGETENTRY :expr {SUBLINK :subselect {QUERY :targetList '
    '({TARGETENTRY :resname deep :resorigtbl 5 :resorigcol 5 :resjunk false})}} :resno 3 '
    ':resname one :ressortgroupref 0 :resorigtbl 0 :resorigcol 0 :resjunk false} {TARGETENTRY '
    ':expr {VAR} :resno 4 :resname hidden :resorigtbl 17112 :resorigcol 3 :resjunk true}) '
    ':override 0})'
)


def test_pg_rule_origins_are_the_top_querys_only() -> None:
    assert pg_target_origins(RULE) == [("id", 17112, 1), ("A id)", 17112, 2)]
    assert pg_target_origins("") == []
    assert pg_target_origins("<>") == []


def test_views_of_views_are_followed_to_a_table() -> None:
    direct = {"v1": {"x": ("t", "id"), "y": ("t", "name")},
              "v2": {"z": ("v1", "x"), "w": ("v1", "nope")},
              "loop_a": {"c": ("loop_b", "c")}, "loop_b": {"c": ("loop_a", "c")}}
    assert follow(direct, frozenset({"t"})) == {
        "v1": {"x": ("t", "id"), "y": ("t", "name")}, "v2": {"z": ("t", "id")}}
