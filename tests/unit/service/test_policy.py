"""Policies (pure): columns and rows per role, claims substitution, cache contexts."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from headwater.db.sql import compile_read
from headwater.errors import EncryptedColumn, Forbidden, SettingsError, UnknownColumn
from headwater.model.catalog import Catalog, Column, Table
from headwater.model.grammar import parse_query
from headwater.model.principal import Principal
from headwater.model.request import ApiRequest, Condition, Logic
from headwater.service.plan import plan_mutation, plan_read
from headwater.service.policy import PolicySet, parse_rows
from headwater.settings_file import parse_security

ORDERS = Table("orders", MappingProxyType({
    "id": Column("id", "integer", "integer", nullable=False, primary_key=True),
    "customer_id": Column("customer_id", "integer", "integer", nullable=False),
    "status": Column("status", "text", "text"),
    "note": Column("note", "text", "text"),
}), primary_key=("id",))
CATALOG = Catalog.build([ORDERS], "postgresql")


def policies(text: str, env: dict[str, str] | None = None) -> PolicySet:
    import tomllib

    return PolicySet(parse_security(tomllib.loads(text), env or {}))


CUSTOMER = """
[auth]
anonymous_role = "anon"
[[policy]]
role = "customer"
table = "orders"
actions = ["select", "update"]
columns = ["id", "status", "note"]
rows = "customer_id=eq.{claims.sub}&status=neq.cancelled"
[encryption]
keys = { k1 = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" }
columns = ["orders.note"]
"""


def read(query: str, principal: Principal, ps: PolicySet, anonymous: bool = False):  # type: ignore[no-untyped-def]
    from headwater.model.grammar import split_query_string

    api = ApiRequest("GET", "orders", parse_query(split_query_string(query)))
    return plan_read(CATALOG, api, access=ps.access(principal, anonymous=anonymous))


def test_claims_become_bound_values_never_sql() -> None:
    ps = policies(CUSTOMER.replace("status=neq.cancelled", "status=eq.{claims.tier}"))
    evil = "x') OR (1=1); DROP TABLE orders; --"
    plan = read("select=id", Principal("customer", {"sub": "42", "tier": evil}), ps)
    sql = compile_read("postgresql", "public", plan.root, plan.limit_param, plan.offset_param,
                       False).aggregate
    assert "DROP" not in sql and "1=1" not in sql
    assert '"customer_id" = $' in sql and '"status" = $' in sql
    assert 42 in plan.params and evil in plan.params
    # a claim is coerced as its column's type, and never parsed as filter syntax
    with pytest.raises(Exception, match="invalid input syntax"):
        read("select=id", Principal("customer", {"sub": "1&or=(id.gt.0)", "tier": "a"}), ps)


def test_star_expands_to_allowed_columns_and_hidden_ones_are_unknown() -> None:
    ps = policies(CUSTOMER)
    who = Principal("customer", {"sub": "1"})
    plan = read("", who, ps)
    assert [o.key for o in plan.root.outputs] == ["id", "status", "note"]
    for q in ("select=customer_id", "customer_id=eq.1", "order=customer_id"):
        with pytest.raises(UnknownColumn) as unknown:
            read(q, who, ps)
        assert unknown.value.message == "column orders.customer_id does not exist"
        assert unknown.value.hint is None  # never a hidden column as a suggestion
    with pytest.raises(Forbidden) as exc:
        read("", Principal("anon"), ps, anonymous=True)
    assert exc.value.status == 401


def test_encrypted_columns_cannot_be_filtered_or_ordered() -> None:
    ps = policies(CUSTOMER)
    who = Principal("customer", {"sub": "1"})
    for q in ("note=eq.x", "order=note", "or=(note.is.null,id.eq.1)"):
        with pytest.raises(EncryptedColumn):
            read(q, who, ps)
    with pytest.raises(SettingsError, match="encrypted"):
        policies(CUSTOMER.replace("status=neq.cancelled", "note=neq.x"))


def test_missing_claim_is_refused() -> None:
    with pytest.raises(Forbidden, match="claim"):
        read("", Principal("customer", {}), policies(CUSTOMER))


def test_cache_context_carries_role_and_claim_values() -> None:
    ps = policies(CUSTOMER)
    a = ps.context(Principal("customer", {"sub": "1", "iat": 1}))
    assert a == ps.context(Principal("customer", {"sub": "1", "iat": 2}))  # unused claims
    assert a != ps.context(Principal("customer", {"sub": "2"}))
    assert a != ps.context(Principal("support", {"sub": "1"}))
    assert policies("").context(Principal()) == "anon"  # nothing enforced


def test_permissive_policies_combine() -> None:
    ps = policies(CUSTOMER + """
[[policy]]
role = "customer"
table = "orders"
actions = ["select"]
columns = ["customer_id"]
rows = "status=eq.paid"
""")
    access = ps.access(Principal("customer", {"sub": "5"}), anonymous=False)
    rule = access.rule("orders", "select")
    assert rule.columns == frozenset({"id", "status", "note", "customer_id"})
    assert isinstance(rule.rows, Logic) and rule.rows.op == "or"
    assert access.rule("orders", "update").columns == frozenset({"id", "status", "note"})


def test_list_claims_expand_in_lists() -> None:
    ps = policies("""
[[policy]]
role = "member"
table = "orders"
actions = ["select"]
rows = "customer_id=in.({claims.accounts})"
""")
    rule = ps.access(Principal("member", {"accounts": [3, 4]}), anonymous=False).rule(
        "orders", "select")
    assert rule.rows == Logic("and", (Condition("customer_id", "in", ("3", "4")),))


@pytest.mark.parametrize(("text", "error"), [
    ("[[policy]]\nrole='x'\ntable='t'\nactions=['select']\nrows='a=zz.1'\n", "operator"),
    ("[[policy]]\nrole='x'\ntable='t'\nactions=['select']\nrows='select=a'\n", "not a filter"),
    ("[[policy]]\nrole='x'\ntable='t'\nactions=['select']\nrows='a=eq.x{claims.s}'\n",
     "whole value"),
])
def test_policy_rows_errors_name_the_key(text: str, error: str) -> None:
    import tomllib

    with pytest.raises(SettingsError, match=error):
        PolicySet(parse_security(tomllib.loads(text), {}))


def test_key_filter_for_written_rows() -> None:
    from headwater.service.policy import key_filter

    assert key_filter(("id",), [{"id": 1}, {"id": 2}]) == Condition("id", "in", ("1", "2"))
    both = key_filter(("a", "b"), [{"a": 1, "b": True}])
    assert both == Logic("or", (Logic("and", (Condition("a", "eq", "1"),
                                              Condition("b", "eq", "true"))),))
    assert parse_rows("a=eq.1", "w").preds == (Condition("a", "eq", "1"),)


WRITER = """
[[policy]]
role = "clerk"
table = "orders"
actions = ["select"]
columns = ["id", "status"]
[[policy]]
role = "clerk"
table = "orders"
actions = ["update", "delete"]
rows = "id=gt.0"
[[policy]]
role = "deleter"
table = "orders"
actions = ["delete"]
"""


def mutation(query: str, principal: Principal, ps: PolicySet):  # type: ignore[no-untyped-def]
    from headwater.model.grammar import split_query_string

    api = ApiRequest("DELETE", "orders", parse_query(split_query_string(query)))
    return plan_mutation(CATALOG, api, "delete", access=ps.access(principal, anonymous=False))


def test_write_filters_name_only_readable_columns() -> None:
    """A delete policy without columns does not open the other columns to filters: what a
    write matches would tell their values (issue 16, item 3)."""
    ps = policies(WRITER)
    clerk = Principal("clerk")
    mutation("id=eq.1&status=eq.paid&order=status&limit=1", clerk, ps)
    for q in ("note=like.a*", "customer_id=eq.1", "or=(note.eq.x,id.eq.1)", "order=note",
              "notes=eq.x"):
        with pytest.raises(UnknownColumn) as unknown:
            mutation(q, clerk, ps)
        assert "note" not in (unknown.value.hint or ""), q
    # the policy's own filter may name any column
    assert mutation("", clerk, ps).shape.where
    # no select policy: the table's columns cannot be named at all
    with pytest.raises(Forbidden, match="permission denied for table orders"):
        mutation("id=eq.1", Principal("deleter"), ps)
    mutation("", Principal("deleter"), ps)


@pytest.mark.parametrize(("http", "role", "honoured"), [
    ("", "clerk", False),                                       # policies: off by default
    ('tx_end = "commit-allow-override"', "clerk", True),
    ('tx_end = "commit"\ntx_override_roles = ["clerk"]', "clerk", True),
    ('tx_override_roles = ["clerk"]', "deleter", False),
])
def test_tx_rollback_follows_tx_end(http: str, role: str, honoured: bool) -> None:
    from headwater.model.request import Preferences

    ps = policies(WRITER + "[http]\n" + http + "\n")
    access = ps.access(Principal(role), anonymous=False)
    assert access.may_roll_back is honoured
    got = access.preferences(Preferences(tx="rollback", returning="minimal"))
    assert got == Preferences(tx="rollback" if honoured else None, returning="minimal")
    # nothing enforced: honoured, as PostgREST's default is for a single-user setup
    assert policies("").access(Principal(), anonymous=True).may_roll_back
    with pytest.raises(SettingsError, match="tx_end"):
        policies('[http]\ntx_end = "rollback"\n')


@pytest.mark.parametrize(("http", "role", "allowed"), [
    ("", "clerk", False),
    ('plan_roles = ["clerk"]', "clerk", True),
    ('plan_roles = ["clerk"]', "deleter", False),
])
def test_plans_only_for_plan_roles_once_enforced(http: str, role: str, allowed: bool) -> None:
    ps = policies(WRITER + "[http]\n" + http + "\n")
    assert ps.access(Principal(role), anonymous=False).may_plan is allowed
