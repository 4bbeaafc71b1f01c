"""Issue 14, relationships: self-references, many-to-many through junction tables, through
views, computed fields and relationships, over HTTP on both databases, each answer checked
against the SQL the database runs itself (``oracle``)."""

from __future__ import annotations

import asyncio
import secrets
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from headwater.testing import ServerProcess
from tests.conftest import Served, _pg_execute, pg_url_for
from tests.integration import oracle

COMMON_DDL = """
CREATE TABLE fam (id integer PRIMARY KEY, name text NOT NULL,
                  parent_id integer REFERENCES fam (id));
CREATE TABLE orgs (id integer PRIMARY KEY, name text NOT NULL,
                   referee integer REFERENCES orgs (id), auditor integer REFERENCES orgs (id));
CREATE TABLE films (id integer PRIMARY KEY, title text NOT NULL);
CREATE TABLE actors (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE roles (film_id integer NOT NULL REFERENCES films (id),
                    actor_id integer NOT NULL REFERENCES actors (id),
                    part text, PRIMARY KEY (film_id, actor_id));
CREATE TABLE sites (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE projects (id integer PRIMARY KEY, name text NOT NULL);
CREATE TABLE jobs (site_id integer NOT NULL REFERENCES sites (id),
                   project_id integer NOT NULL REFERENCES projects (id),
                   PRIMARY KEY (site_id, project_id));
CREATE TABLE main_jobs (id integer PRIMARY KEY,
                        site_id integer NOT NULL REFERENCES sites (id),
                        project_id integer NOT NULL REFERENCES projects (id),
                        UNIQUE (site_id, project_id));
CREATE TABLE notes (id integer PRIMARY KEY, film_id integer REFERENCES films (id),
                    actor_id integer REFERENCES actors (id), body text);
INSERT INTO fam VALUES (1, 'root', NULL), (2, 'kid one', 1), (3, 'kid two', 1),
                       (4, 'grandkid', 2), (5, 'other root', NULL);
INSERT INTO orgs VALUES (1, 'Referee Org', NULL, NULL), (2, 'Auditor Org', NULL, NULL),
                        (3, 'Acme', 1, 2), (4, 'Umbrella', 1, 2), (5, 'Cyberdyne', 3, 4);
INSERT INTO films VALUES (1, 'Alien'), (2, 'Brazil'), (3, 'Casablanca'), (4, 'Dune');
INSERT INTO actors VALUES (1, 'Ann'), (2, 'Bob'), (3, 'Cid'), (4, 'Dee');
INSERT INTO roles VALUES (1, 1, 'lead'), (1, 2, 'crew'), (2, 2, 'lead'), (2, 3, NULL),
                         (3, 1, 'cameo');
INSERT INTO sites VALUES (1, 'north'), (2, 'south'), (3, 'east');
INSERT INTO projects VALUES (1, 'apollo'), (2, 'gemini');
INSERT INTO jobs VALUES (1, 1), (2, 1), (2, 2);
INSERT INTO main_jobs VALUES (1, 1, 2), (2, 3, 1);
INSERT INTO notes VALUES (1, 1, 2, 'n1'), (2, 2, NULL, 'n2');
CREATE VIEW film_cards AS SELECT f.id AS film_id, f.title AS label FROM films f;
CREATE VIEW role_view AS SELECT r.actor_id, r.film_id AS movie, upper(r.part) AS part
  FROM roles AS r JOIN films f ON f.id = r.film_id;
CREATE VIEW mixed_view AS SELECT id AS film_id FROM films UNION SELECT id FROM actors;
CREATE VIEW cards_of_cards AS SELECT c.film_id AS fid FROM film_cards c;
"""

PG_DDL = """
CREATE TABLE people (id integer PRIMARY KEY, first_name text, last_name text);
INSERT INTO people VALUES (1, 'Ada', 'Lovelace'), (2, 'Alan', 'Turing'), (3, 'Grace', NULL);
CREATE FUNCTION full_name(people) RETURNS text LANGUAGE sql STABLE AS
  $$ SELECT $1.first_name || ' ' || coalesce($1.last_name, '?') $$;
CREATE FUNCTION cast_of(films) RETURNS SETOF actors LANGUAGE sql STABLE AS
  $$ SELECT a.* FROM actors a JOIN roles r ON r.actor_id = a.id WHERE r.film_id = $1.id $$;
CREATE FUNCTION first_film(actors) RETURNS films LANGUAGE sql STABLE AS
  $$ SELECT f.* FROM films f JOIN roles r ON r.film_id = f.id WHERE r.actor_id = $1.id
     ORDER BY f.id LIMIT 1 $$;
"""


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def rel(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        ) -> Iterator[Served]:
    if request.param == "sqlite":
        db_url = f"sqlite:///{Path(tmp_path_factory.mktemp('rel')) / 'rel.db'}"
        oracle.execute(db_url, COMMON_DDL)
    else:
        admin = request.getfixturevalue("pg_admin")
        name = "hw_rel_" + secrets.token_hex(4)
        asyncio.run(_pg_execute(admin, f'CREATE DATABASE "{name}"'))
        request.addfinalizer(lambda: asyncio.run(  # noqa: PT021
            _pg_execute(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')))
        db_url = pg_url_for(name)
        oracle.execute(db_url, COMMON_DDL + PG_DDL)
    with ServerProcess(db_url) as server:
        yield Served(server.url, db_url, request.param)


def _get(served: Served, path: str, status: int = 200) -> Any:
    r = httpx.get(f"{served.url}{path}", timeout=10)
    assert r.status_code == status, r.text
    return r.json()


def _grouped(served: Served, sql: str) -> dict[int, list[Any]]:
    """(key, value) rows of ``sql`` as key → values in order (a key with a NULL value: [])."""
    out: dict[int, list[Any]] = defaultdict(list)
    for key, value in oracle.rows(served.database_url, sql):
        out[int(key)]
        if value is not None:
            out[int(key)].append(value)
    return dict(out)


# --- self-referencing tables --------------------------------------------------------------------

def test_self_reference_parent_by_column(rel: Served) -> None:
    rows = _get(rel, "/fam?select=id,parent_id(id,name,parent_id(id))&order=id")
    parents = dict(oracle.rows(rel.database_url, "SELECT id, parent_id FROM fam"))
    names = dict(oracle.rows(rel.database_url, "SELECT id, name FROM fam"))
    for r in rows:
        p = parents[r["id"]]
        if p is None:
            assert r["parent_id"] is None
        else:
            assert r["parent_id"]["id"] == p and r["parent_id"]["name"] == names[p]
            gp = parents[p]
            assert r["parent_id"]["parent_id"] == (None if gp is None else {"id": gp})


def test_self_reference_parent_by_table_and_column_hint(rel: Served) -> None:
    rows = _get(rel, "/fam?select=id,parent:fam!parent_id(id)&order=id")
    expected = oracle.rows(rel.database_url, "SELECT id, parent_id FROM fam ORDER BY id")
    assert [(r["id"], (r["parent"] or {}).get("id")) for r in rows] == expected


@pytest.mark.parametrize("embed", ["children:fam(id,name)",
                                   "children:fam!fam_parent_id_fkey(id,name)",
                                   "children:fam!id(id,name)"])
def test_self_reference_children(rel: Served, embed: str) -> None:
    rows = _get(rel, f"/fam?select=id,{embed}&order=id&children.order=id")
    expected = _grouped(rel, "SELECT p.id, c.id FROM fam p LEFT JOIN fam c "
                             "ON c.parent_id = p.id ORDER BY p.id, c.id")
    assert {r["id"]: [c["id"] for c in r["children"]] for r in rows} == expected


def test_self_reference_children_then_grandchildren(rel: Served) -> None:
    rows = _get(rel, "/fam?id=eq.1&select=id,kids:fam(id,kids:fam(id))&kids.order=id")
    assert rows == [{"id": 1, "kids": [{"id": 2, "kids": [{"id": 4}]},
                                       {"id": 3, "kids": []}]}]


def test_two_self_references(rel: Served) -> None:
    rows = _get(rel, "/orgs?id=eq.5&select=name,referee(name,auditor(name)),auditor(name)")
    assert rows == [{"name": "Cyberdyne", "referee": {"name": "Acme",
                                                      "auditor": {"name": "Auditor Org"}},
                     "auditor": {"name": "Umbrella"}}]
    rows = _get(rel, "/orgs?id=eq.1&select=id,refereeds:orgs!orgs_referee_fkey(id)"
                     "&refereeds.order=id")
    expected = oracle.ids(rel.database_url, "SELECT id FROM orgs WHERE referee = 1 ORDER BY id")
    assert [o["id"] for o in rows[0]["refereeds"]] == expected


def test_two_self_references_are_ambiguous_by_the_table_name(rel: Served) -> None:
    body = _get(rel, "/orgs?select=*,orgs(*)", 300)
    details = body.pop("details")
    assert sorted(details, key=lambda d: d["relationship"]) == [
        {"cardinality": "one-to-many", "embedding": "orgs with orgs",
         "relationship": "orgs_auditor_fkey using orgs(id) and orgs(auditor)"},
        {"cardinality": "one-to-many", "embedding": "orgs with orgs",
         "relationship": "orgs_referee_fkey using orgs(id) and orgs(referee)"},
    ]
    order = [d["relationship"].split(" ")[0] for d in details]
    assert body == {
        "code": "PGRST201",
        "hint": "Try changing 'orgs' to one of the following: "
                f"'orgs!{order[0]}', 'orgs!{order[1]}'. "
                "Find the desired relationship in the 'details' key.",
        "message": "Could not embed because more than one relationship was found for 'orgs' "
                   "and 'orgs'",
    }


# --- many-to-many -------------------------------------------------------------------------------

def test_many_to_many_through_a_junction(rel: Served) -> None:
    rows = _get(rel, "/films?select=id,title,actors(id,name)&order=id&actors.order=id")
    expected = _grouped(rel, "SELECT f.id, a.id FROM films f LEFT JOIN roles r "
                             "ON r.film_id = f.id LEFT JOIN actors a ON a.id = r.actor_id "
                             "ORDER BY f.id, a.id")
    assert {r["id"]: [a["id"] for a in r["actors"]] for r in rows} == expected
    names = dict(oracle.rows(rel.database_url, "SELECT id, name FROM actors"))
    assert all(a["name"] == names[a["id"]] for r in rows for a in r["actors"])
    # and the other way, with a filter inside the embed and !inner
    rows = _get(rel, "/actors?select=id,films!inner(title)&films.title=like.*a*&order=id")
    # (SQLite's LIKE is blind to case: GLOB is the oracle's LIKE there)
    like = "LIKE '%a%'" if rel.dialect == "postgresql" else "GLOB '*a*'"
    expected = _grouped(rel, "SELECT a.id, f.title FROM actors a JOIN roles r "
                             "ON r.actor_id = a.id JOIN films f ON f.id = r.film_id "
                             f"WHERE f.title {like} ORDER BY a.id, f.title")
    assert {r["id"]: sorted(f["title"] for f in r["films"]) for r in rows} == expected


def test_many_to_many_with_the_junction_as_hint(rel: Served) -> None:
    for junction in ("jobs", "main_jobs"):
        rows = _get(rel, f"/sites?select=id,projects!{junction}(id)&order=id"
                         "&projects.order=id")
        expected = _grouped(rel, f"SELECT s.id, j.project_id FROM sites s LEFT JOIN "
                                 f"{junction} j ON j.site_id = s.id ORDER BY s.id, j.project_id")
        assert {r["id"]: [p["id"] for p in r["projects"]] for r in rows} == expected


def test_many_to_many_ambiguity_is_postgrests_300(rel: Served) -> None:
    body = _get(rel, "/sites?select=*,projects(*)", 300)
    assert body["code"] == "PGRST201"
    assert sorted(body["details"], key=lambda d: d["relationship"]) == [
        {"cardinality": "many-to-many", "embedding": "sites with projects",
         "relationship": "jobs using jobs_site_id_fkey(site_id) and "
                         "jobs_project_id_fkey(project_id)"},
        {"cardinality": "many-to-many", "embedding": "sites with projects",
         "relationship": "main_jobs using main_jobs_site_id_fkey(site_id) and "
                         "main_jobs_project_id_fkey(project_id)"},
    ]
    assert body["message"] == ("Could not embed because more than one relationship was found "
                               "for 'sites' and 'projects'")
    assert "'projects!jobs'" in body["hint"] and "'projects!main_jobs'" in body["hint"]


def test_a_table_with_two_keys_outside_its_primary_key_is_no_junction(rel: Served) -> None:
    body = _get(rel, "/films?select=*,actors!notes(*)", 400)
    assert body["code"] == "PGRST200"


# --- through views ------------------------------------------------------------------------------

def test_view_embeds_what_its_key_column_references(rel: Served) -> None:
    rows = _get(rel, "/role_view?select=actor_id,movie,actors(name),films(title)"
                     "&order=movie,actor_id")
    expected = oracle.rows(rel.database_url,
                           "SELECT r.actor_id, r.film_id, a.name, f.title FROM roles r "
                           "JOIN actors a ON a.id = r.actor_id JOIN films f "
                           "ON f.id = r.film_id ORDER BY r.film_id, r.actor_id")
    assert [(r["actor_id"], r["movie"], r["actors"]["name"], r["films"]["title"])
            for r in rows] == expected


def test_table_embeds_a_view_of_its_children(rel: Served) -> None:
    rows = _get(rel, "/films?select=id,role_view(actor_id)&order=id"
                     "&role_view.order=actor_id")
    expected = _grouped(rel, "SELECT f.id, r.actor_id FROM films f LEFT JOIN roles r "
                             "ON r.film_id = f.id ORDER BY f.id, r.actor_id")
    assert {r["id"]: [x["actor_id"] for x in r["role_view"]] for r in rows} == expected


def test_view_of_a_key_embeds_both_ways(rel: Served) -> None:
    rows = _get(rel, "/film_cards?select=film_id,label,roles(actor_id)&order=film_id"
                     "&roles.order=actor_id")
    expected = _grouped(rel, "SELECT f.id, r.actor_id FROM films f LEFT JOIN roles r "
                             "ON r.film_id = f.id ORDER BY f.id, r.actor_id")
    assert {r["film_id"]: [x["actor_id"] for x in r["roles"]] for r in rows} == expected
    rows = _get(rel, "/roles?select=film_id,actor_id,film_cards(label)&order=film_id,actor_id")
    titles = dict(oracle.rows(rel.database_url, "SELECT id, title FROM films"))
    assert rows and all(r["film_cards"] == {"label": titles[r["film_id"]]} for r in rows)
    # many-to-many from the view, through the junction
    rows = _get(rel, "/film_cards?select=film_id,actors(id)&order=film_id&actors.order=id")
    expected = _grouped(rel, "SELECT f.id, r.actor_id FROM films f LEFT JOIN roles r "
                             "ON r.film_id = f.id ORDER BY f.id, r.actor_id")
    assert {r["film_id"]: [a["id"] for a in r["actors"]] for r in rows} == expected


def test_view_of_a_view_follows_through(rel: Served) -> None:
    rows = _get(rel, "/cards_of_cards?select=fid,notes(id)&order=fid&notes.order=id")
    expected = _grouped(rel, "SELECT f.id, n.id FROM films f LEFT JOIN notes n "
                             "ON n.film_id = f.id ORDER BY f.id, n.id")
    assert {r["fid"]: [n["id"] for n in r["notes"]] for r in rows} == expected


def test_view_columns_that_are_no_plain_column_get_no_relationship(rel: Served) -> None:
    assert _get(rel, "/mixed_view?select=*,roles(*)", 400)["code"] == "PGRST200"


# --- computed fields and relationships (PostgreSQL) ---------------------------------------------

def _pg(rel: Served) -> None:
    if rel.dialect != "postgresql":
        pytest.skip("functions of a row are PostgreSQL's")


def test_computed_field_selected_filtered_ordered(rel: Served) -> None:
    _pg(rel)
    rows = _get(rel, "/people?select=id,name:full_name&order=full_name.desc")
    expected = oracle.rows(rel.database_url, "SELECT p.id, full_name(p) FROM people p "
                                             "ORDER BY full_name(p) DESC")
    assert [(r["id"], r["name"]) for r in rows] == expected
    rows = _get(rel, "/people?select=id&full_name=eq.Alan Turing")
    assert rows == [{"id": 2}]
    rows = _get(rel, "/people?select=id,full_name&full_name=like.*?")
    assert rows == [{"id": 3, "full_name": "Grace ?"}]
    # not part of *
    assert set(_get(rel, "/people?select=*&limit=1")[0]) == {"id", "first_name", "last_name"}


def test_computed_relationships(rel: Served) -> None:
    _pg(rel)
    rows = _get(rel, "/films?select=id,cast_of(id)&order=id&cast_of.order=id")
    expected = _grouped(rel, "SELECT f.id, a.id FROM films f LEFT JOIN roles r "
                             "ON r.film_id = f.id LEFT JOIN actors a ON a.id = r.actor_id "
                             "ORDER BY f.id, a.id")
    assert {r["id"]: [a["id"] for a in r["cast_of"]] for r in rows} == expected
    rows = _get(rel, "/actors?select=id,first_film(title)&order=id")
    firsts = oracle.rows(rel.database_url, "SELECT a.id, (first_film(a)).title FROM actors a "
                                           "ORDER BY a.id")
    assert [(r["id"], (r["first_film"] or {}).get("title")) for r in rows] == firsts


# --- the demo's view ----------------------------------------------------------------------------

def test_demo_view_embeds_customers_and_back(served: Served) -> None:
    # customer_totals.customer_id is customers.id: the view takes the place of customers in
    # the one key that references it (customers.referred_by), both ways
    rows = _get(served, "/customer_totals?select=customer_id,customers(id)&order=customer_id"
                        "&limit=30&customers.order=id")
    expected = _grouped(served, "SELECT p.id, c.id FROM customers p LEFT JOIN customers c "
                                "ON c.referred_by = p.id WHERE p.id IN (SELECT id FROM customers "
                                "ORDER BY id LIMIT 30) ORDER BY p.id, c.id")
    assert {r["customer_id"]: [c["id"] for c in r["customers"]] for r in rows} == expected
    rows = _get(served, "/customers?select=id,referred_by,customer_totals(customer_id,name)"
                        "&order=id&limit=40")
    assert any(r["referred_by"] is not None for r in rows)
    for r in rows:
        assert r["customer_totals"] == (None if r["referred_by"] is None else
                                        {"customer_id": r["referred_by"],
                                         "name": r["customer_totals"]["name"]})
    rows = _get(served, "/orders?select=id,customer_id,customer_totals(customer_id)&limit=10")
    assert all(r["customer_totals"] == {"customer_id": r["customer_id"]} for r in rows)


def test_demo_self_reference_both_ways(served: Served) -> None:
    rows = _get(served, "/customers?select=id,referrer:referred_by(id),"
                        "referrals:customers!customers_referred_by_fkey(id)"
                        "&order=id&limit=40&referrals.order=id")
    expected = _grouped(served, "SELECT p.id, c.id FROM customers p LEFT JOIN customers c "
                                "ON c.referred_by = p.id WHERE p.id IN (SELECT id FROM customers "
                                "ORDER BY id LIMIT 40) ORDER BY p.id, c.id")
    assert {r["id"]: [c["id"] for c in r["referrals"]] for r in rows} == expected
    parents = dict(oracle.rows(served.database_url,
                               "SELECT id, referred_by FROM customers ORDER BY id LIMIT 40"))
    assert {r["id"]: (r["referrer"] or {}).get("id") for r in rows} == parents
