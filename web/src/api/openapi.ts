// OpenAPI document (PostgREST convention) → the console's schema model.

export type ColumnKind =
  | 'integer'
  | 'number'
  | 'boolean'
  | 'date'
  | 'timestamp'
  | 'timestamptz'
  | 'time'
  | 'json'
  | 'uuid'
  | 'enum'
  | 'text'

export interface ForeignKey {
  table: string
  column: string
}

export interface Column {
  name: string
  kind: ColumnKind
  /** Raw OpenAPI `format` (database type name), e.g. `int4`, `numeric`, `timestamp`. */
  format: string
  nullable: boolean
  /** NOT NULL without a default: must be given on insert. */
  required: boolean
  hasDefault: boolean
  /** A key the database fills in on insert (identity, serial, rowid): optional there. */
  generated: boolean
  defaultValue: unknown
  isPk: boolean
  fk: ForeignKey | null
  enumValues: string[] | null
  maxLength: number | null
  comment: string | null
}

export interface Reference {
  /** The table holding the foreign key. */
  table: string
  /** The foreign-key column in `table`. */
  column: string
  /** The referenced column in this table. */
  refColumn: string
}

export interface Table {
  name: string
  columns: Column[]
  pk: string[]
  canInsert: boolean
  canUpdate: boolean
  canDelete: boolean
  /** Tables whose foreign keys point at this one (to-many relationships). */
  referencedBy: Reference[]
}

export interface Schema {
  title: string | null
  version: string | null
  tables: Table[]
}

interface RawProperty {
  type?: string | string[]
  format?: string
  nullable?: boolean
  description?: string
  default?: unknown
  enum?: unknown[]
  maxLength?: number
  items?: unknown
  'x-db-type'?: string
}

interface RawSchema {
  type?: string
  properties?: Record<string, RawProperty>
  required?: string[]
}

type RawPaths = Record<string, Record<string, unknown> | undefined>

const INTEGER_FORMATS = new Set([
  'integer', 'int', 'int2', 'int4', 'int8', 'smallint', 'bigint', 'serial', 'bigserial', 'smallserial',
])
const NUMBER_FORMATS = new Set([
  'numeric', 'decimal', 'real', 'double precision', 'float', 'float4', 'float8', 'double', 'number', 'money',
])
const TIMESTAMPTZ_FORMATS = new Set(['timestamp with time zone', 'timestamptz', 'date-time'])
const TIMESTAMP_FORMATS = new Set(['timestamp', 'timestamp without time zone', 'datetime'])
const TIME_FORMATS = new Set(['time', 'time without time zone', 'time with time zone', 'timetz'])
// `any`: a SQLite column without a declared type holds any value (JSON Schema's "any value").
const JSON_FORMATS = new Set(['json', 'jsonb', 'any'])

function kindOfTypeName(name: string): ColumnKind | null {
  if (INTEGER_FORMATS.has(name)) return 'integer'
  if (NUMBER_FORMATS.has(name)) return 'number'
  if (name === 'boolean' || name === 'bool') return 'boolean'
  if (name === 'date') return 'date'
  if (TIMESTAMPTZ_FORMATS.has(name)) return 'timestamptz'
  if (TIMESTAMP_FORMATS.has(name)) return 'timestamp'
  if (TIME_FORMATS.has(name)) return 'time'
  if (JSON_FORMATS.has(name)) return 'json'
  if (name === 'uuid') return 'uuid'
  return null
}

/** `NUMERIC(10, 2)` → `numeric`; `VARCHAR(20)` → `varchar`. */
function normalizeTypeName(s: string | undefined): string {
  return (s ?? '').toLowerCase().replace(/\(.*\)/, '').replace(/\s+/g, ' ').trim()
}

export function columnKind(prop: RawProperty): ColumnKind {
  if (Array.isArray(prop.enum) && prop.enum.length > 0) return 'enum'
  const type = Array.isArray(prop.type) ? prop.type.find((t) => t !== 'null') : prop.type
  // Headwater adds the database type (x-db-type); it tells timestamp from timestamptz.
  const byDbType = kindOfTypeName(normalizeTypeName(prop['x-db-type']))
  if (byDbType) return byDbType
  const byFormat = kindOfTypeName(normalizeTypeName(prop.format))
  if (byFormat) return byFormat
  if (type === 'integer') return 'integer'
  if (type === 'number') return 'number'
  if (type === 'boolean') return 'boolean'
  if (type === 'object' || type === 'array') return 'json'
  // A property with no type at all is JSON Schema's "any value": a json column.
  if (type === undefined && !prop.format) return 'json'
  return 'text'
}

const FK_RE = /<fk\s+table=['"]([^'"]+)['"]\s+column=['"]([^'"]+)['"]\s*\/>/
const FK_NOTE_RE = /This is a Foreign Key to `([^.`]+)\.([^`]+)`/
const PK_RE = /<pk\s*\/>/

export function parseForeignKey(description: string | undefined): ForeignKey | null {
  if (!description) return null
  const m = FK_RE.exec(description) ?? FK_NOTE_RE.exec(description)
  return m && m[1] && m[2] ? { table: m[1], column: m[2] } : null
}

/** The human part of a column description (before PostgREST's "Note:" block). */
function commentOf(description: string | undefined): string | null {
  if (!description) return null
  const text = description.split(/\n?Note:\n/)[0]?.replace(/<[^>]+\/>/g, '').trim() ?? ''
  return text || null
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * The columns an insert must carry, from the POST operation's body schema. Headwater's
 * component schemas list no `required` (a read's select= may leave any column out); its POST
 * body is `oneOf: [allOf: [$ref, {required: [...]}], {items: ...}]`.
 */
function requiredOnInsert(ops: Record<string, unknown>): string[] | null {
  const post = ops.post
  if (!isRecord(post) || !isRecord(post.requestBody) || !isRecord(post.requestBody.content)) return null
  const json = post.requestBody.content['application/json']
  if (!isRecord(json)) return null
  const found = new Set<string>()
  let seen = false
  const walk = (node: unknown, depth: number): void => {
    if (!isRecord(node) || depth > 6) return
    if (Array.isArray(node.required)) {
      seen = true
      for (const n of node.required) if (typeof n === 'string') found.add(n)
    }
    for (const key of ['oneOf', 'anyOf', 'allOf'] as const) {
      const list = node[key]
      if (Array.isArray(list)) for (const sub of list) walk(sub, depth + 1)
    }
    walk(node.items, depth + 1)
  }
  walk(json.schema, 0)
  // A body that is only a $ref (no column is required) still tells: nothing is required.
  return seen || isRecord(json.schema) ? [...found] : null
}

export function parseOpenApi(doc: unknown): Schema {
  if (!isRecord(doc)) throw new Error('The OpenAPI document is not a JSON object')
  const components = isRecord(doc.components) ? doc.components : {}
  const schemas = (isRecord(components.schemas) ? components.schemas : isRecord(doc.definitions) ? doc.definitions : {}) as Record<string, RawSchema>
  const paths = (isRecord(doc.paths) ? doc.paths : {}) as RawPaths
  const info = isRecord(doc.info) ? doc.info : {}
  const isOpenApi3 = typeof doc.openapi === 'string'

  const tables: Table[] = []
  for (const [path, ops] of Object.entries(paths)) {
    const m = /^\/([^/]+)$/.exec(path)
    if (!m || !m[1] || !ops || path.startsWith('/rpc/')) continue
    if (!('get' in ops)) continue
    const name = decodeURIComponent(m[1])
    const raw = schemas[name]
    const onInsert = requiredOnInsert(ops)
    const required = new Set([...(raw?.required ?? []), ...(onInsert ?? [])])
    // Whether the document says which columns an insert needs (else NOT NULL says nothing of defaults).
    const knowsRequired = raw?.required !== undefined || onInsert !== null
    const columns: Column[] = Object.entries(raw?.properties ?? {}).map(([col, prop]) => {
      const isRequired = required.has(col)
      // OpenAPI 3 says `nullable: true`; Swagger 2 (PostgREST) only lists NOT NULL columns in `required`.
      const nullable = isOpenApi3 ? prop.nullable === true || (Array.isArray(prop.type) && prop.type.includes('null')) : !isRequired
      // `required` lists NOT NULL columns without a default, so NOT NULL and not required means a default.
      const hasDefault = prop.default !== undefined || (isOpenApi3 && knowsRequired && !nullable && !isRequired)
      const isPk = PK_RE.test(prop.description ?? '')
      const kind = columnKind(prop)
      return {
        name: col,
        kind,
        format: prop['x-db-type'] ?? prop.format ?? (Array.isArray(prop.type) ? prop.type.join('|') : prop.type ?? 'json'),
        nullable,
        required: isRequired,
        hasDefault,
        // SQLite's rowid key may be declared nullable; an insert without it still gets one.
        generated: isPk && (hasDefault || (isOpenApi3 && knowsRequired && !isRequired && kind === 'integer')),
        defaultValue: prop.default ?? null,
        isPk,
        fk: parseForeignKey(prop.description),
        enumValues: Array.isArray(prop.enum) ? prop.enum.map(String) : null,
        maxLength: typeof prop.maxLength === 'number' ? prop.maxLength : null,
        comment: commentOf(prop.description),
      }
    })
    tables.push({
      name,
      columns,
      pk: columns.filter((c) => c.isPk).map((c) => c.name),
      canInsert: 'post' in ops,
      canUpdate: 'patch' in ops,
      canDelete: 'delete' in ops,
      referencedBy: [],
    })
  }
  tables.sort((a, b) => a.name.localeCompare(b.name))
  const byName = new Map(tables.map((t) => [t.name, t]))
  for (const t of tables) {
    for (const c of t.columns) {
      if (!c.fk) continue
      byName.get(c.fk.table)?.referencedBy.push({ table: t.name, column: c.name, refColumn: c.fk.column })
    }
  }
  return {
    title: typeof info.title === 'string' ? info.title : null,
    version: typeof info.version === 'string' ? info.version : null,
    tables,
  }
}

export function findTable(schema: Schema, name: string): Table | undefined {
  return schema.tables.find((t) => t.name === name)
}
