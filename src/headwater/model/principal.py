"""Who is asking, and what they may ask to do."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

#: What a policy grants on a table; the verbs of the security settings file.
Action: TypeAlias = Literal["select", "insert", "update", "delete"]
ACTIONS: tuple[Action, ...] = ("select", "insert", "update", "delete")
#: The actions that change rows: what hooks attach to and events record.
WriteAction: TypeAlias = Literal["insert", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: the anonymous role until authentication says otherwise."""

    role: str = "anonymous"
    claims: Mapping[str, Any] = field(default_factory=dict)


def principal_json(principal: Principal) -> dict[str, Any]:
    """How an event names who wrote it."""
    return {"role": principal.role, "claims": dict(principal.claims)}
