"""Choosing a database function's overload and reading its GET arguments (pure)."""

from __future__ import annotations

import pytest

from headwater.db.functions import call
from headwater.errors import AmbiguousFunction, NotFound
from headwater.model.catalog import Function, Parameter
from headwater.service.functions import choose, query_args


def fn(*params: Parameter, name: str = "f") -> Function:
    return Function(name=name, parameters=params, returns="scalar", return_type="integer",
                    volatility="immutable")


A = Parameter("a", "integer")
B = Parameter("b", "text", has_default=True)
PARTS = Parameter("parts", "text[]", variadic=True, is_array=True)
JSON = Parameter("", "json")


def test_overload_by_argument_names() -> None:
    one, two = fn(A), fn(Parameter("s", "text"))
    assert choose("public", "f", [one, two], ["a"], whole_body=False) is one
    assert choose("public", "f", [one, two], ["s"], whole_body=False) is two
    with pytest.raises(NotFound) as info:
        choose("public", "f", [one, two], ["x"], whole_body=False)
    assert info.value.code == "PGRST202"


def test_defaults_make_overloads_ambiguous() -> None:
    with pytest.raises(AmbiguousFunction) as info:
        choose("public", "f", [fn(B), fn(Parameter("c", "integer", has_default=True))], [],
               whole_body=False)
    assert (info.value.status, info.value.code) == (300, "PGRST203")


def test_a_single_unnamed_json_parameter_takes_any_body() -> None:
    only = fn(JSON)
    assert choose("public", "f", [only], ["anything"], whole_body=False) is only
    assert choose("public", "f", [only], [], whole_body=False, body_is_object=False) is only


def test_query_arguments_and_the_read_grammar() -> None:
    args, rest = query_args([fn(A, PARTS)], [("a", "1"), ("parts", "x"), ("parts", "y"),
                                             ("select", "id"), ("id", "eq.1")])
    assert args == {"a": "1", "parts": ["x", "y"]}
    assert rest == [("select", "id"), ("id", "eq.1")]
    args, _ = query_args([fn(PARTS)], [("parts", "{x,y}")])
    assert args == {"parts": "{x,y}"}


def test_call_sql_binds_only_the_json_of_the_arguments() -> None:
    c = call("public", fn(A, PARTS), ["a", "parts"], 2)
    assert c.from_ == 'json_to_record($3::json) AS _a("a" integer, "parts" text[])'
    assert c.expr == '"public"."f"("a" := _a."a", VARIADIC "parts" := _a."parts")'
    assert call("public", fn(JSON), [], 0, whole=True).expr == '"public"."f"($1::json::json)'
