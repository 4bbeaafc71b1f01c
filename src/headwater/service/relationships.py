"""Which relationship an embed names: PostgREST's rules for names and ``!hints``, and its
errors when none or several match (pure)."""

from __future__ import annotations

from headwater.errors import AmbiguousRelationship, UnknownRelationship
from headwater.model.catalog import Catalog, Relationship
from headwater.model.request import Embed

_CARDINALITY = {"m2o": "many-to-one", "o2m": "one-to-many", "o2o": "one-to-one",
                "m2m": "many-to-many"}


def _matches(rel: Relationship, target: str, hint: str | None) -> bool:
    """PostgREST's rules (its ``findRel``) for whether ``target!hint`` names ``rel``."""
    if rel.function is not None:
        return target == rel.function
    single_src = rel.source_columns[0] if len(rel.source_columns) == 1 else None
    single_dst = rel.target_columns[0] if len(rel.target_columns) == 1 else None
    if rel.is_self:
        # One key, two directions: the table's name gives the children, the key's column
        # the parent (``parent_id(*)``, and here also ``tbl!parent_id(*)``, as issue 14
        # asks: PostgREST itself reads that hint as the children); the constraint or the
        # referenced column as a hint give the children.
        if rel.cardinality == "m2o":
            return (hint is None and target == single_src) or (
                target == rel.target and hint is not None and hint == single_src)
        if target != rel.target:
            return False
        if hint is None:
            return rel.cardinality in ("o2m", "o2o")
        if rel.junction is not None:
            return hint == rel.junction.table
        return hint in (rel.constraint, single_src)
    if hint is None:
        return target == rel.target or (not rel.target_is_view and rel.junction is None and (
            target == rel.constraint or (rel.cardinality == "m2o" and target == single_src)))
    if target != rel.target:
        return False
    if rel.junction is not None:
        return hint == rel.junction.table
    return hint in (rel.constraint, single_src, single_dst)


def _describe(source: str, r: Relationship) -> dict[str, str]:
    if r.junction is not None:
        j = r.junction
        how = (f"{j.table} using {j.source_constraint}({', '.join(j.source_columns)}) and "
               f"{j.target_constraint}({', '.join(j.target_columns)})")
    else:
        how = (f"{r.constraint} using {source}({', '.join(r.source_columns)}) and "
               f"{r.target}({', '.join(r.target_columns)})")
    return {"cardinality": _CARDINALITY[r.cardinality], "embedding": f"{source} with {r.target}",
            "relationship": how}


def resolve_relationship(catalog: Catalog, source: str, item: Embed) -> Relationship:
    rels = catalog.relationships.get(source, ())
    cands = [r for r in rels if _matches(r, item.name, item.hint)]
    if not cands:
        raise UnknownRelationship(
            f"Could not find a relationship between '{source}' and '{item.name}' in the "
            "schema cache",
            details=f"Searched for a foreign key relationship between '{source}' and "
                    f"'{item.name}'" + (f" using the hint '{item.hint}'" if item.hint else ""),
            hint="Perhaps you meant one of: " + ", ".join(sorted({r.target for r in rels}))
            if rels else None)
    if len(cands) > 1:
        raise AmbiguousRelationship(
            f"Could not embed because more than one relationship was found for '{source}' and "
            f"'{item.name}'",
            details=[_describe(source, r) for r in cands],
            hint=f"Try changing '{item.name}' to one of the following: "
                 + ", ".join(f"'{item.name}!"
                             f"{r.junction.table if r.junction else r.constraint}'"
                             for r in cands)
                 + ". Find the desired relationship in the 'details' key.")
    return cands[0]
