"""The ``postgrest`` package from PyPI (Supabase's Python client) against a real server: the
scenarios of ``test_postgrest_js.py`` for which the Python client has a method (issues 14,
15), on this module's own copy of the fixture schema, once per database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from postgrest import APIError, SyncPostgrestClient
from postgrest.types import CountMethod

from tests.clients.conftest import postgres_only
from tests.conftest import Served
from tests.integration import oracle


@pytest.fixture(scope="module")
def pg(clients_served: Served) -> Iterator[SyncPostgrestClient]:
    client = SyncPostgrestClient(clients_served.url)
    try:
        yield client
    finally:
        client.session.close()


def data(res: Any) -> Any:
    """A response's rows (the client types them as any JSON value)."""
    return res.data


def args(**kw: Any) -> Any:
    """RPC arguments (the client types them as a mapping of strings)."""
    return kw


def names(res: Any) -> list[str]:
    return [r["username"] for r in data(res)]


def ids(res: Any) -> list[int]:
    return [r["id"] for r in data(res)]


def users(pg: SyncPostgrestClient) -> Any:
    return pg.from_("users").select("username")


def api_error(query: Any) -> APIError:
    with pytest.raises(APIError) as err:
        query.execute()
    return err.value


# ---- reads -------------------------------------------------------------------------------

def test_filters_eq_neq_gt_in_is(pg: SyncPostgrestClient) -> None:
    assert names(users(pg).eq("status", "ONLINE").order("id").execute()) == ["alice", "carol", "eve"]
    assert names(users(pg).neq("username", "alice").order("id").execute()) == [
        "bob", "carol", "dave", "eve"]
    assert names(users(pg).gt("age", 25).order("id").execute()) == ["alice", "carol"]
    assert names(users(pg).in_("username", ["bob", "dave"]).order("id").execute()) == ["bob", "dave"]
    assert names(users(pg).is_("age", None).execute()) == ["eve"]
    assert names(users(pg).not_.is_("age", None).order("id").execute()) == [
        "alice", "bob", "carol", "dave"]


def test_filters_like_any_all_match(pg: SyncPostgrestClient) -> None:
    assert names(users(pg).like("bio", "%cat%").order("id").execute()) == ["alice", "dave"]
    assert names(users(pg).ilike("username", "%A%").order("id").execute()) == [
        "alice", "carol", "dave"]
    assert names(users(pg).like_any_of("bio", "%cats%,%hiking%").order("id").execute()) == [
        "alice", "bob"]
    assert names(users(pg).like_all_of("bio", "%cat%,%dog%").execute()) == ["alice"]
    assert names(users(pg).ilike_any_of("username", "A%,B%").order("id").execute()) == [
        "alice", "bob"]
    assert names(users(pg).match({"status": "ONLINE", "age": 30}).execute()) == ["alice"]


def test_filters_not_or_and(pg: SyncPostgrestClient) -> None:
    assert names(users(pg).or_("age.lt.20,username.eq.eve").order("id").execute()) == [
        "dave", "eve"]
    assert names(users(pg).not_.eq("status", "ONLINE").order("id").execute()) == ["bob", "dave"]
    assert names(users(pg).or_("and(status.eq.ONLINE,age.gt.35),username.eq.bob").order("id")
                 .execute()) == ["bob", "carol"]


def test_filters_arrays(pg: SyncPostgrestClient) -> None:
    kitchen = pg.from_("kitchen").select("id")
    assert ids(kitchen.contains("tags", ["a"]).order("id").execute()) == [1]
    kitchen = pg.from_("kitchen").select("id")
    assert ids(kitchen.contained_by("tags", ["a", "b", "c"]).order("id").execute()) == [1, 2, 3]
    kitchen = pg.from_("kitchen").select("id")
    assert ids(kitchen.overlaps("tags", ["c", "z"]).order("id").execute()) == [2]


def test_filters_full_text(pg: SyncPostgrestClient, clients_served: Served) -> None:
    postgres_only(clients_served, "full-text search (a 400 on SQLite, see the js suite)")
    assert names(users(pg).text_search("catchphrase", "'fat' & 'cat'",
                                       options={"config": "english"}).execute()) == ["alice"]
    assert names(users(pg).plfts("catchphrase", "cat").order("id").execute()) == ["alice", "bob"]
    assert names(users(pg).wfts("catchphrase", "cat -dog").execute()) == ["alice"]
    assert names(users(pg).phfts("catchphrase", "hello world").execute()) == ["carol"]


def test_order_limit_range_and_embedded_modifiers(pg: SyncPostgrestClient) -> None:
    assert names(users(pg).order("age", desc=True, nullsfirst=False).limit(2).execute()) == [
        "carol", "alice"]
    assert names(users(pg).order("age", nullsfirst=True).limit(2).execute()) == ["eve", "dave"]
    assert names(users(pg).order("id").range(1, 2).execute()) == ["bob", "carol"]
    res = (pg.from_("channels").select("slug, messages(id)").eq("id", 1)
           .order("id", desc=True, foreign_table="messages").limit(1, foreign_table="messages")
           .execute())
    assert res.data == [{"slug": "general", "messages": [{"id": 4}]}]


def test_single_and_maybe_single(pg: SyncPostgrestClient) -> None:
    assert users(pg).eq("id", 1).single().execute().data == {"username": "alice"}
    err = api_error(users(pg).single())
    assert err.code == "PGRST116"
    assert err.message == "JSON object requested, multiple (or no) rows returned"
    assert users(pg).eq("id", -1).maybe_single().execute() is None
    one = users(pg).eq("id", 2).maybe_single().execute()
    assert one is not None and one.data == {"username": "bob"}


def test_count_exact_head_and_get(pg: SyncPostgrestClient) -> None:
    res = (pg.from_("users").select("*", count=CountMethod.exact, head=True)
           .eq("status", "ONLINE").execute())
    assert res.count == 3
    res = pg.from_("users").select("id", count=CountMethod.exact).order("id").range(0, 1).execute()
    assert ids(res) == [1, 2] and res.count == 5


def test_embedding_hints_inner_and_ambiguity(pg: SyncPostgrestClient) -> None:
    res = (pg.from_("messages").select("id, channel:channels(slug), author:users!author_id(username)")
           .eq("id", 1).execute())
    assert res.data == [{"id": 1, "channel": {"slug": "general"}, "author": {"username": "alice"}}]
    res = (pg.from_("channels").select("slug, messages!inner(id)").eq("messages.author_id", 2)
           .order("id").execute())
    assert [c["slug"] for c in data(res)] == ["general", "random", "safety-update"]
    err = api_error(pg.from_("messages").select("id, users(username)"))
    assert err.code == "PGRST201"


def test_csv(pg: SyncPostgrestClient) -> None:
    text = pg.from_("users").select("id,username,bio").order("id").limit(2).csv().execute().data
    assert str(text) == 'id,username,bio\n1,alice,"Loves cats and dogs"\n2,bob,"Enjoys hiking"'


def test_errors_unknown_column_and_bad_operator(pg: SyncPostgrestClient) -> None:
    err = api_error(pg.from_("users").select("nope"))
    assert (err.code, err.message) == ("42703", "column users.nope does not exist")
    err = api_error(pg.from_("users").select("id").filter("age", "eqq", "1"))
    assert err.code == "PGRST100"
    assert str(err.message).startswith('"failed to parse filter (eqq.1)"')


def test_rpc_database_function(pg: SyncPostgrestClient, clients_served: Served) -> None:
    postgres_only(clients_served, "database functions")
    assert pg.rpc("get_status", args(name_param="alice")).execute().data == "ONLINE"
    res = (pg.rpc("users_older_than", args(min_age=20)).select("username").gt("age", 29)
           .order("age").execute())
    assert names(res) == ["alice", "carol"]
    assert pg.rpc("get_status", args(name_param="bob"), get=True).execute().data == "OFFLINE"
    res = pg.rpc("users_older_than", args(min_age=0), count=CountMethod.exact, head=True).execute()
    assert res.count == 4


def test_rpc_python_function(pg: SyncPostgrestClient) -> None:
    assert pg.rpc("greet", args(name="ann", excited=True)).execute().data == "hello ann!"
    assert pg.rpc("greet", args(name="bo"), get=True).execute().data == "hello bo"


def test_embedded_count(pg: SyncPostgrestClient) -> None:
    res = pg.from_("channels").select("slug, messages(count)").eq("id", 1).execute()
    assert res.data == [{"slug": "general", "messages": [{"count": 3}]}]


def test_schema_not_exposed(pg: SyncPostgrestClient) -> None:
    err = api_error(pg.schema("personal").from_("diary").select("*"))
    assert err.code == "PGRST106"


# ---- writes ------------------------------------------------------------------------------

def test_insert_update_delete_with_counts(pg: SyncPostgrestClient, clients_served: Served) -> None:
    db = clients_served.database_url
    res = pg.from_("notes").insert({"slug": "py-insert", "body": "hello"}).execute()
    assert [(r["slug"], r["body"], r["votes"]) for r in data(res)] == [("py-insert", "hello", 0)]
    res = pg.from_("notes").insert([{"slug": "py-many-1"}, {"slug": "py-many-2"}],
                                   count=CountMethod.exact).execute()
    assert res.count == 2 and len(res.data) == 2
    res = pg.from_("notes").update({"body": "new"}).eq("slug", "seed-update").execute()
    assert [r["body"] for r in data(res)] == ["new"]
    res = pg.from_("notes").update({"votes": 7}, count=CountMethod.exact).like(
        "slug", "seed-count-%").execute()
    assert res.count == 2
    res = pg.from_("notes").delete(count=CountMethod.exact).like("slug", "seed-del-%").execute()
    assert res.count == 2
    assert oracle.rows(db, "SELECT slug, body, votes FROM notes WHERE slug IN "
                       "('py-insert', 'py-many-1', 'seed-update', 'seed-count-a', 'seed-del-a') "
                       "ORDER BY slug") == [("py-insert", "hello", 0), ("py-many-1", None, 0),
                                            ("seed-count-a", None, 7), ("seed-update", "new", 0)]


def test_single_after_write_is_a_safety_net(pg: SyncPostgrestClient, clients_served: Served,
                                            ) -> None:
    err = api_error(pg.from_("messages").update({"body": "changed"}).eq("channel_id", 3).single())
    assert err.code == "PGRST116"
    err = api_error(pg.from_("messages").delete().eq("channel_id", 4).single())
    assert err.code == "PGRST116"
    assert oracle.rows(clients_served.database_url, "SELECT id, body FROM messages WHERE "
                       "channel_id IN (3, 4) ORDER BY id") == [
        (5, "update me A"), (6, "update me B"), (7, "delete me A"), (8, "delete me B")]
    res = pg.from_("notes").update({"body": "only me"}).eq("slug", "seed-single").single().execute()
    assert data(res)["body"] == "only me"


def test_upsert_on_conflict_and_ignore_duplicates(pg: SyncPostgrestClient,
                                                  clients_served: Served) -> None:
    res = pg.from_("notes").upsert({"slug": "seed-upsert", "body": "merged"},
                                   on_conflict="slug").execute()
    assert [(r["slug"], r["body"]) for r in data(res)] == [("seed-upsert", "merged")]
    res = pg.from_("notes").upsert([{"slug": "seed-upsert", "body": "ignored"},
                                    {"slug": "py-upsert-ign", "body": "kept"}],
                                   on_conflict="slug", ignore_duplicates=True).execute()
    assert [(r["slug"], r["body"]) for r in data(res)] == [("py-upsert-ign", "kept")]
    assert oracle.rows(clients_served.database_url, "SELECT slug, body FROM notes WHERE slug IN "
                       "('seed-upsert', 'py-upsert-ign') ORDER BY slug") == [
        ("py-upsert-ign", "kept"), ("seed-upsert", "merged")]


def test_rpc_volatile_function(pg: SyncPostgrestClient, clients_served: Served) -> None:
    postgres_only(clients_served, "database functions")
    assert pg.rpc("add_vote", args(note_slug="seed-vote")).execute().data == 1
    assert oracle.rows(clients_served.database_url,
                       "SELECT votes FROM notes WHERE slug = 'seed-vote'") == [(1,)]
