"""``Accept: application/vnd.pgrst.plan`` negotiation (pure)."""

from __future__ import annotations

import pytest

from headwater.errors import NotAcceptable
from headwater.model.headers import PlanAsk, parse_plan_accept


def test_plan_media_types() -> None:
    assert parse_plan_accept("application/vnd.pgrst.plan") == PlanAsk(
        "text", (), "json", "application/vnd.pgrst.plan+text; charset=utf-8")
    assert parse_plan_accept("application/vnd.pgrst.plan+json") == PlanAsk(
        "json", (), "json", "application/vnd.pgrst.plan+json; charset=utf-8")
    ask = parse_plan_accept('application/vnd.pgrst.plan+json; for="application/vnd.pgrst.object"; '
                            "options=analyze|verbose")
    assert ask == PlanAsk("json", ("analyze", "verbose"), "object",
                          'application/vnd.pgrst.plan+json; for="application/vnd.pgrst.object+json"'
                          "; options=analyze|verbose; charset=utf-8")


def test_better_ranked_types_win() -> None:
    assert parse_plan_accept("application/json, application/vnd.pgrst.plan") is None
    assert parse_plan_accept("text/csv;q=0.5, application/vnd.pgrst.plan") is not None
    assert parse_plan_accept("application/vnd.pgrst.plan;q=0") is None


@pytest.mark.parametrize("header", [
    "application/vnd.pgrst.plan; options=drop",
    'application/vnd.pgrst.plan; for="text/xml"',
])
def test_unknown_options_are_not_acceptable(header: str) -> None:
    with pytest.raises(NotAcceptable):
        parse_plan_accept(header)


def test_empty_options_are_none() -> None:
    # what @supabase/postgrest-js sends for explain() without options
    ask = parse_plan_accept('application/vnd.pgrst.plan+text; for="application/json"; options=;')
    assert ask is not None and ask.options == ()
