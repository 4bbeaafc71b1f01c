"""Relationship discovery (``Catalog.build``) and resolution (``resolve_relationship``):
PostgREST's rules for self-references, junction tables, views and functions of a row."""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

import pytest

from headwater.cache.keys import plan_key
from headwater.db.sql import compile_read
from headwater.errors import AmbiguousRelationship, UnknownColumn, UnknownRelationship
from headwater.model.catalog import Catalog, ForeignKey, Function, Parameter
from headwater.model.request import Embed
from headwater.service.plan import plan_read
from headwater.service.relationships import resolve_relationship
from tests.unit.catalogs import request, table


def fk(t: str, cols: tuple[str, ...], ref: str, ref_cols: tuple[str, ...] = ("id",),
       name: str | None = None) -> ForeignKey:
    return ForeignKey(name or f"{t}_{'_'.join(cols)}_fkey", t, cols, ref, ref_cols)


def catalog(**extra: Any) -> Catalog:
    films = table("films", {"id": "integer", "title": "text"})
    actors = table("actors", {"id": "integer", "name": "text"})
    roles = table("roles", {"film_id": "integer", "actor_id": "integer"},
                  pk=("film_id", "actor_id"),
                  fks=(fk("roles", ("film_id",), "films"), fk("roles", ("actor_id",), "actors")))
    notes = table("notes", {"id": "integer", "film_id": "integer", "actor_id": "integer"},
                  fks=(fk("notes", ("film_id",), "films"), fk("notes", ("actor_id",), "actors")))
    view = table("film_view", {"fid": "integer", "title": "text"}, pk=())
    view = dataclasses.replace(view, is_view=True, sources=MappingProxyType(
        {"fid": ("films", "id"), "title": ("films", "title")}))
    tree = table("tree", {"id": "integer", "parent_id": "integer"},
                 fks=(fk("tree", ("parent_id",), "tree"),))
    return Catalog.build([films, actors, roles, notes, view, tree], "postgresql", **extra)


CAT = catalog()


def rel(source: str, select: str) -> Any:
    plan = plan_read(CAT, request(source, f"select={select}"))
    return plan.root.embeds()[0]


def test_junction_needs_both_keys_in_its_primary_key() -> None:
    node = rel("films", "actors(*)")
    assert node.to_many and node.via is not None and node.via.table == "roles"
    assert node.via.to_node == (("actor_id", "id"),)
    assert node.via.to_parent == (("film_id", "id"),)
    assert plan_read(CAT, request("films", "select=*,actors(*)")).root.tables() == {
        "films", "actors", "roles"}
    with pytest.raises(UnknownRelationship):  # notes' keys are no key of notes
        rel("films", "actors!notes(*)")
    assert rel("films", "actors!roles(*)").via is not None


def test_views_inherit_the_keys_their_columns_show() -> None:
    node = rel("film_view", "roles(*)")
    assert node.join == (("film_id", "fid"),) and node.to_many
    node = rel("roles", "film_view(*)")
    assert node.join == (("fid", "film_id"),) and not node.to_many
    assert rel("film_view", "actors(*)").via is not None  # many-to-many from the view
    # a column or constraint named as the target never picks a view
    assert rel("roles", "film_id(*)").table == "films"
    assert rel("roles", "roles_film_id_fkey(*)").table == "films"


def test_self_reference_directions() -> None:
    assert rel("tree", "tree(*)").to_many
    assert not rel("tree", "parent_id(*)").to_many
    assert not rel("tree", "tree!parent_id(*)").to_many
    assert rel("tree", "tree!tree_parent_id_fkey(*)").to_many
    assert rel("tree", "tree!id(*)").to_many


def test_ambiguity_lists_junctions_by_name() -> None:
    extra = table("reviews", {"film_id": "integer", "actor_id": "integer", "n": "integer"},
                  pk=("film_id", "actor_id", "n"),
                  fks=(fk("reviews", ("film_id",), "films"),
                       fk("reviews", ("actor_id",), "actors")))
    cat = Catalog.build([*CAT.tables.values(), extra], "postgresql")
    with pytest.raises(AmbiguousRelationship) as e:
        resolve_relationship(cat, "films", Embed("actors", ()))
    assert e.value.details == [
        {"cardinality": "many-to-many", "embedding": "films with actors",
         "relationship": "roles using roles_film_id_fkey(film_id) and "
                         "roles_actor_id_fkey(actor_id)"},
        {"cardinality": "many-to-many", "embedding": "films with actors",
         "relationship": "reviews using reviews_film_id_fkey(film_id) and "
                         "reviews_actor_id_fkey(actor_id)"}]
    assert "'actors!roles', 'actors!reviews'" in str(e.value.hint)


def test_junctions_are_part_of_the_cache_key() -> None:
    extra = table("crew", {"film_id": "integer", "actor_id": "integer"},
                  pk=("film_id", "actor_id"),
                  fks=(fk("crew", ("film_id",), "films"), fk("crew", ("actor_id",), "actors")))
    cat = Catalog.build([*CAT.tables.values(), extra], "postgresql")
    a = plan_read(cat, request("films", "select=id,actors!roles(id)"))
    b = plan_read(cat, request("films", "select=id,actors!crew(id)"))
    assert plan_key(a, "anon") != plan_key(b, "anon")


def _functions() -> list[Function]:
    row = (Parameter("", "films"),)
    return [
        Function("shout", row, "scalar", "text", "stable", kind="text"),
        Function("cast_of", row, "set", "setof actors", "stable", table="actors"),
        Function("volatile_one", row, "scalar", "text", "volatile", kind="text"),
        Function("two_args", (*row, Parameter("x", "integer")), "scalar", "text", "stable"),
    ]


def test_computed_fields_and_relationships() -> None:
    cat = catalog(functions=_functions())
    assert set(cat.tables["films"].computed) == {"shout"}
    plan = plan_read(cat, request("films", "select=id,loud:shout&shout=eq.X&order=shout"))
    sql = compile_read("postgresql", "public", plan.root, 0, 1, False).aggregate
    assert '"public"."shout"(t0) AS "loud"' in sql
    assert '"public"."shout"(t0) = $1' in sql and 'ORDER BY "public"."shout"(t0)' in sql
    star = plan_read(cat, request("films", "select=*"))
    assert "shout" not in compile_read("postgresql", "public", star.root, 0, 1, False).aggregate
    node = plan_read(cat, request("films", "select=id,cast_of(name)")).root.embeds()[0]
    assert node.function == "cast_of" and node.to_many and node.table == "actors"
    sql = compile_read("postgresql", "public", node, 0, 1, False).rows
    assert '"public"."cast_of"(' in sql
    with pytest.raises(UnknownColumn):
        plan_read(cat, request("films", "select=volatile_one"))


JUNCTION_POLICY = """
[[policy]]
role = "fan"
table = "films"
actions = ["select"]
[[policy]]
role = "fan"
table = "actors"
actions = ["select"]
[[policy]]
role = "fan"
table = "roles"
actions = ["select"]
rows = "film_id=lt.100"
"""


def test_the_junctions_row_policy_applies_and_a_hidden_junction_is_forbidden() -> None:
    import tomllib

    from headwater.errors import Forbidden
    from headwater.model.principal import Principal
    from headwater.service.policy import PolicySet
    from headwater.settings_file import parse_security

    def access(text: str) -> Any:
        return PolicySet(parse_security(tomllib.loads(text), {})).access(
            Principal("fan", {}), anonymous=False)

    plan = plan_read(CAT, request("films", "select=id,actors(id)"),
                     access=access(JUNCTION_POLICY))
    sql = compile_read("postgresql", "public", plan.root, plan.limit_param, plan.offset_param,
                       False).aggregate
    assert 't1_j."film_id" < $' in sql
    hidden = JUNCTION_POLICY[:JUNCTION_POLICY.index('table = "roles"')].rsplit("[[", 1)[0]
    with pytest.raises(Forbidden):
        plan_read(CAT, request("films", "select=id,actors(id)"), access=access(hidden))
