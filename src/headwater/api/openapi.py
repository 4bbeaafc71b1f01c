"""The OpenAPI 3 document served at ``GET /``, generated from the catalog (pure)."""

from __future__ import annotations

from typing import Any

from headwater.db.catalog import Catalog, Column, ColumnKind, Table

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
    "other": {"type": "string"},
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
        if col.kind not in ("date", "timestamp", "timestamptz", "time", "uuid"):
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


def _table_schema(table: Table) -> dict[str, Any]:
    required = [c.name for c in table.columns.values() if not c.nullable and not c.has_default]
    out: dict[str, Any] = {
        "type": "object",
        "properties": {c.name: _column_schema(table, c) for c in table.columns.values()},
    }
    if required:
        out["required"] = required
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


def openapi_document(catalog: Catalog, *, title: str = "Headwater", version: str = "0.1.0",
                     ) -> dict[str, Any]:
    paths: dict[str, Any] = {"/": {"get": {"summary": "This document", "tags": ["Introspection"],
                                           "responses": {"200": {"description": "OK"}}}}}
    schemas: dict[str, Any] = {"Error": _ERROR}
    for table in catalog.tables.values():
        paths[f"/{table.name}"] = {"get": _read_op(table)}
        schemas[table.name] = _table_schema(table)
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
