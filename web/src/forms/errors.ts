// Server validation errors → messages per field.

import { ApiError } from '../api/errors.ts'
import type { FieldErrors } from './payload.ts'

export interface MappedErrors {
  fields: FieldErrors
  /** What could not be tied to a field (or the error's headline). */
  general: string | null
}

function add(fields: FieldErrors, col: string, msg: string): void {
  fields[col] = fields[col] ? `${fields[col]}; ${msg}` : msg
}

/** `"quantity: must be an integer; email: is required"` → {quantity: …, email: …}. */
export function parseDetailsString(details: string, columns: ReadonlySet<string>): { fields: FieldErrors; rest: string[] } {
  const fields: FieldErrors = {}
  const rest: string[] = []
  for (const part of details.split(/;\s*|\n+/)) {
    const p = part.trim()
    if (!p) continue
    const m = /^["'`]?([^"'`:\s]+)["'`]?\s*:\s*(.+)$/s.exec(p)
    if (m && m[1] && m[2] && columns.has(m[1])) add(fields, m[1], m[2].trim())
    else rest.push(p)
  }
  return { fields, rest }
}

/** Column names that PostgreSQL/PostgREST messages mention. */
const COLUMN_PATTERNS: RegExp[] = [
  /column "([^"]+)"/, // null value in column "x" … / column "x" of relation …
  /the '([^']+)' column/, // PGRST204: Could not find the 'x' column of 't' in the schema cache
  /Key \(([^)=,]+)\)=/, // unique / foreign key violations (details)
  /column '([^']+)'/,
  /(?:UNIQUE|NOT NULL|FOREIGN KEY) constraint failed: [^.\s]+\.([^\s,]+)/, // SQLite
  /CHECK constraint failed: ([A-Za-z_][A-Za-z0-9_]*)/, // SQLite: the expression's first name
]

/** PostgreSQL names a column's CHECK `<table>_<column>_check` (the longest matching column wins). */
function checkConstraintColumn(text: string, columns: ReadonlySet<string>): string | null {
  const m = /violates check constraint "([^"]+)"/.exec(text)
  if (!m || !m[1]) return null
  const name = m[1]
  const hits = [...columns].filter((c) => name.endsWith(`_${c}_check`) || name === `${c}_check`)
  return hits.sort((a, b) => b.length - a.length)[0] ?? null
}

function columnsMentioned(text: string, columns: ReadonlySet<string>): string[] {
  const found: string[] = []
  const checked = checkConstraintColumn(text, columns)
  if (checked) found.push(checked)
  for (const re of COLUMN_PATTERNS) {
    const m = re.exec(text)
    if (m && m[1] && columns.has(m[1].trim()) && !found.includes(m[1].trim())) found.push(m[1].trim())
  }
  return found
}

export function mapFieldErrors(err: unknown, columnNames: Iterable<string>): MappedErrors {
  const columns = new Set(columnNames)
  if (!(err instanceof ApiError)) {
    return { fields: {}, general: err instanceof Error ? err.message : String(err) }
  }
  const fields: FieldErrors = {}
  const extra: string[] = []
  const { details } = err

  if (typeof details === 'string' && details.trim()) {
    const parsed = parseDetailsString(details, columns)
    Object.assign(fields, parsed.fields)
    extra.push(...parsed.rest)
  } else if (Array.isArray(details)) {
    for (const item of details) {
      if (item && typeof item === 'object') {
        const o = item as Record<string, unknown>
        const col = [o.column, o.field, o.name, o.loc].find((v) => typeof v === 'string') as string | undefined
        const msg = typeof o.message === 'string' ? o.message : typeof o.msg === 'string' ? o.msg : JSON.stringify(o)
        if (col && columns.has(col)) add(fields, col, msg)
        else extra.push(msg)
      } else if (typeof item === 'string') extra.push(item)
    }
  } else if (details && typeof details === 'object') {
    for (const [k, v] of Object.entries(details as Record<string, unknown>)) {
      const msg = Array.isArray(v) ? v.map(String).join('; ') : typeof v === 'string' ? v : JSON.stringify(v)
      if (columns.has(k)) add(fields, k, msg)
      else extra.push(`${k}: ${msg}`)
    }
  }

  if (Object.keys(fields).length === 0) {
    // PostgreSQL-style errors name the column inside the message or details.
    for (const col of columnsMentioned(err.message, columns)) add(fields, col, err.message)
    if (typeof details === 'string' && Object.keys(fields).length === 0) {
      for (const col of columnsMentioned(details, columns)) add(fields, col, details)
    }
  }

  const general = [err.summary, ...extra, err.hint ? `Hint: ${err.hint}` : ''].filter(Boolean).join(' — ')
  return { fields, general }
}
