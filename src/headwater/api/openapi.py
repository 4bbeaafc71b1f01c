"""The OpenAPI 3 document served at ``GET /``, generated from the catalog (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from headwater.model.catalog import Catalog, Column, ColumnKind, Function, Table
from headwater.service.hooks import RpcSpec

_TYPES: dict[ColumnKind, dict[str, str]] = {
    "integer": {"type": "integer"},
    "float": {"type": "number"},
    "numeric": {"type": "number"},
    "boolean": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "timestamp": {"type": "string", "format": "date-time"},
    "timestamptz": {"type": "string", "format": "date-time"},
    "time": {"type": "string", "format": "time"},
    "uuid": {"type": "string", "format": "uuid"},
    "text": {"type": "string"},
    "bytes": {"type": "string"},
    # Unknown types (arrays, domains, untyped view columns) may be any JSON value.
    "other": {},
}

_ERROR = {
    "type": "object",
    "properties": {"code": {"type": "string"}, "message": {"type": "string"},
                   "details": {}, "hint": {"type": "string", "nullable": True}},
    "required": ["code", "message"],
}


def _column_schema(table: Table, col: Column) -> dict[str, Any]:
    schema: dict[str, Any] = dict(_TYPES.get(col.kind, {}))
    if col.kind == "json":
        schema = {}
    else:
        schema["x-db-type"] = col.db_type
        # JSON Schema's date-time and time need a UTC offset: only timestamptz values have one.
        if col.kind not in ("date", "timestamptz", "uuid"):
            schema["format"] = col.db_type
    if col.nullable:
        schema["nullable"] = True
    if col.max_length is not None:
        schema["maxLength"] = col.max_length
    notes: list[str] = []
    if col.primary_key:
        notes.append("Note:\nThis is a Primary Key.<pk/>")
    for fk in table.foreign_keys:
        if fk.columns == (col.name,):
            ref = fk.ref_columns[0]
            notes.append(f"Note:\nThis is a Foreign Key to `{fk.ref_table}.{ref}`."
                         f"<fk table='{fk.ref_table}' column='{ref}'/>")
    if notes:
        schema["description"] = "\n".join(notes)
    return schema


def _required(table: Table) -> list[str]:
    return [c.name for c in table.columns.values() if not c.nullable and not c.has_default]


def _table_schema(table: Table) -> dict[str, Any]:
    # No "required" here: a read's select= may leave out any column. Bodies that must carry
    # the not-null columns (POST, PUT) add it (``_write_ops``).
    out: dict[str, Any] = {
        "type": "object",
        "properties": {c.name: _column_schema(table, c) for c in table.columns.values()},
    }
    if table.is_view:
        out["description"] = "A view."
    return out


def _read_op(table: Table) -> dict[str, Any]:
    name = table.name
    params: list[dict[str, Any]] = [{"$ref": f"#/components/parameters/{p}"}
                                    for p in ("select", "order", "limit", "offset", "range",
                                              "rangeUnit", "preferCount")]
    params += [{"name": c.name, "in": "query", "required": False,
                "description": f"Filter on {name}.{c.name}: op.value, e.g. eq.1",
                "schema": {"type": "string"}}
               for c in table.columns.values()]
    rows = {"type": "array", "items": {"$ref": f"#/components/schemas/{name}"}}
    ok = {"description": "OK", "content": {
        "application/json": {"schema": rows},
        "application/vnd.pgrst.object+json": {"schema": {"$ref": f"#/components/schemas/{name}"}},
        "text/csv": {"schema": {"type": "string"}}}}
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    return {"tags": [name], "summary": f"Read rows of {name}", "parameters": params,
            "responses": {"200": ok, "206": {**ok, "description": "Partial Content"},
                          "4XX": error, "5XX": error}}


def _write_ops(table: Table) -> dict[str, Any]:
    name = table.name
    ref = {"$ref": f"#/components/schemas/{name}"}
    required = _required(table)
    full = {"allOf": [ref, {"required": required}]} if required else ref
    body = {"required": True, "content": {
        "application/json": {"schema": {"oneOf": [full, {"type": "array", "items": full}]}},
        "text/csv": {"schema": {"type": "string"}}}}
    patch_body = {"required": True, "content": {"application/json": {"schema": ref}}}
    put_body = {"required": True, "content": {"application/json": {"schema": full}}}
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    rows = {"description": "The written rows (Prefer: return=representation)", "content": {
        "application/json": {"schema": {"type": "array", "items": ref}}}}
    filters = [{"name": c.name, "in": "query", "required": False, "schema": {"type": "string"}}
               for c in table.columns.values()]
    prefer = {"$ref": "#/components/parameters/preferWrite"}
    common = {"4XX": error, "5XX": error}
    return {
        "post": {"tags": [name], "summary": f"Insert or upsert rows of {name}",
                 "parameters": [prefer, {"$ref": "#/components/parameters/select"},
                                {"$ref": "#/components/parameters/columns"},
                                {"$ref": "#/components/parameters/onConflict"}],
                 "requestBody": body,
                 "responses": {"201": {"description": "Created"}, **common}},
        "patch": {"tags": [name], "summary": f"Update rows of {name}",
                  "parameters": [prefer, {"$ref": "#/components/parameters/select"}, *filters],
                  "requestBody": patch_body,
                  "responses": {"200": rows, "204": {"description": "No Content"}, **common}},
        "put": {"tags": [name], "summary": f"Upsert one row of {name} by primary key",
                "parameters": [prefer, *filters], "requestBody": put_body,
                "responses": {"200": rows, "204": {"description": "No Content"}, **common}},
        "delete": {"tags": [name], "summary": f"Delete rows of {name}",
                   "parameters": [prefer, {"$ref": "#/components/parameters/select"}, *filters],
                   "responses": {"200": rows, "204": {"description": "No Content"}, **common}},
    }


def _rpc_op(spec: RpcSpec) -> dict[str, Any]:
    schemas, components = msgspec.json.schema_components(
        [*list(spec.params.values()), spec.returns], ref_template="#/components/schemas/{name}")
    arg_schemas = dict(zip(spec.params, schemas[:-1], strict=True))
    args = {"type": "object", "properties": arg_schemas, "required": sorted(spec.required),
            "additionalProperties": False}
    ok = {"description": "OK", "content": {"application/json": {"schema": schemas[-1]}}}
    error = {"description": "Error", "content": {"application/json": {
        "schema": {"$ref": "#/components/schemas/Error"}}}}
    op: dict[str, Any] = {
        "post": {"tags": ["rpc"], "summary": spec.fn.__doc__ or f"Call {spec.name}",
                 "requestBody": {"required": True,
                                 "content": {"application/json": {"schema": args}}},
                 "responses": {"200": ok, "4XX": error}},
    }
    if spec.read_only:
        op["get"] = {"tags": ["rpc"], "summary": spec.fn.__doc__ or f"Call {spec.name}",
                     "parameters": [{"name": n, "in": "query", "required": n in spec.required,
                                     "schema": s} for n, s in arg_schemas.items()],
                     "responses": {"200": ok, "4XX": error}}
    op["x-components"] = components
    return op


def _function_op(name: str, overloads: tuple[Function, ...]) -> dict[str, Any]:
    """A database function's path: its overloads' parameters (by name) as one body, which
    PostgREST documents the same way; GET when every overload is STABLE or IMMUTABLE."""
    props: dict[str, Any] = {}
    required: set[str] = set.intersection(*(set(f.required) for f in overloads))
    for f in overloads:
        for p in f.parameters:
            if p.name:
                kind = "other" if p.is_array else _db_kind(p.db_type)
                props.setdefault(p.name, {**_TYPES.get(kind, {}), "format": p.db_type})
    first = overloads[0]
    summary = f"Call the database function {name} ({first.volatility})"
    body: dict[str, Any] = {"type": "object", "properties": props,
                            "required": sorted(required & set(props))}
    if first.single_unnamed:
        body = {}
    ok = {"description": "OK", "content": {"application/json": {"schema": {}}}}
    error = {"description": "Error",
             "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    op: dict[str, Any] = {
        "post": {"tags": ["rpc"], "summary": summary,
                 "requestBody": {"required": bool(required),
                                 "content": {"application/json": {"schema": body}}},
                 "responses": {"200": ok, "4XX": error}},
    }
    if all(f.read_only for f in overloads):
        op["get"] = {"tags": ["rpc"], "summary": summary,
                     "parameters": [{"name": n, "in": "query", "required": n in required,
                                     "schema": sch} for n, sch in props.items()],
                     "responses": {"200": ok, "4XX": error}}
    return op


def _db_kind(db_type: str) -> ColumnKind:
    kinds: dict[str, ColumnKind] = {"integer": "integer", "bigint": "integer", "smallint": "integer",
            "numeric": "numeric", "real": "float", "double precision": "float",
            "boolean": "boolean", "text": "text", "character varying": "text",
            "date": "date", "uuid": "uuid"}
    return kinds.get(db_type, "other")


def openapi_document(catalog: Catalog, *, title: str = "Headwater", version: str = "0.1.0",
                     rpcs: Mapping[str, RpcSpec] | None = None) -> dict[str, Any]:
    paths: dict[str, Any] = {"/": {"get": {"summary": "This document", "tags": ["Introspection"],
                                           "responses": {"200": {"description": "OK"}}}}}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for table in catalog.tables.values():
        ops = {"get": _read_op(table)}
        if not table.is_view:
            ops.update(_write_ops(table))
        paths[f"/{table.name}"] = ops
        schemas[table.name] = _table_schema(table)
    for fname, overloads in catalog.functions.items():
        # A Python function of the same name shadows it (below).
        paths[f"/rpc/{fname}"] = _function_op(fname, overloads)
    for spec in (rpcs or {}).values():
        op = _rpc_op(spec)
        schemas.update(op.pop("x-components"))
        paths[f"/rpc/{spec.name}"] = op
    string = {"type": "string"}
    parameters = {
        "select": {"name": "select", "in": "query", "required": False, "schema": string,
                   "description": "Columns and embedded resources, e.g. *,customer:customers(*)"},
        "order": {"name": "order", "in": "query", "required": False, "schema": string,
                  "description": "e.g. created_at.desc.nullslast,id"},
        "limit": {"name": "limit", "in": "query", "required": False,
                  "schema": {"type": "integer", "minimum": 0}},
        "offset": {"name": "offset", "in": "query", "required": False,
                   "schema": {"type": "integer", "minimum": 0}},
        "range": {"name": "Range", "in": "header", "required": False, "schema": string,
                  "description": "Rows to return, e.g. 0-24"},
        "rangeUnit": {"name": "Range-Unit", "in": "header", "required": False,
                      "schema": {"type": "string", "default": "items"}},
        "columns": {"name": "columns", "in": "query", "required": False, "schema": string,
                    "description": "Which keys of the body to insert, e.g. name,price"},
        "onConflict": {"name": "on_conflict", "in": "query", "required": False,
                       "schema": string, "description": "Unique columns for an upsert"},
        "preferWrite": {"name": "Prefer", "in": "header", "required": False, "schema": string,
                        "description": "return=minimal|headers-only|representation, "
                                       "resolution=merge-duplicates|ignore-duplicates, "
                                       "missing=default, tx=rollback, max-affected=N, "
                                       "handling=strict"},
        "preferCount": {"name": "Prefer", "in": "header", "required": False,
                        "schema": {"type": "string",
                                   "enum": ["count=exact", "count=planned", "count=estimated"]}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version,
                 "description": "Every table and view, served in PostgREST's dialect."},
        "paths": paths,
        "components": {"schemas": schemas, "parameters": parameters},
    }


class OpenApi:
    """The document for the current catalog, built once per catalog (a reload makes a new
    catalog object, and with it a new document)."""

    def __init__(self, catalog: Callable[[], Catalog], rpcs: Mapping[str, RpcSpec]) -> None:
        self._catalog = catalog
        self._rpcs = rpcs
        self._built: tuple[Catalog, bytes] | None = None

    def catalog(self) -> Catalog:
        return self._catalog()

    def document(self, catalog: Catalog) -> dict[str, Any]:
        """A fresh document, which the caller may change."""
        return openapi_document(catalog, rpcs=self._rpcs)

    def body(self) -> bytes:
        catalog = self._catalog()
        built = self._built
        if built is None or built[0] is not catalog:
            built = self._built = (catalog, msgspec.json.encode(
                openapi_document(catalog, rpcs=self._rpcs)))
        return built[1]
