// Column type → form input, and value coercion between rows and inputs.

import type { Column } from '../api/openapi.ts'

export type InputKind =
  | 'checkbox'
  | 'tristate'
  | 'integer'
  | 'number'
  | 'date'
  | 'datetime'
  | 'time'
  | 'json'
  | 'enum'
  | 'uuid'
  | 'text'

/** A field's value while editing: text for most inputs, a boolean for checkboxes. */
export type InputValue = string | boolean

/** A NOT NULL boolean whose default the schema does not tell: on insert, "default" is a choice. */
function hasUnknownDefault(c: Column): boolean {
  return c.kind === 'boolean' && !c.nullable && c.hasDefault && c.defaultValue === null
}

export function inputKind(c: Column, mode: 'create' | 'edit' = 'edit'): InputKind {
  if (mode === 'create' && hasUnknownDefault(c)) return 'tristate'
  switch (c.kind) {
    case 'boolean':
      return c.nullable ? 'tristate' : 'checkbox'
    case 'integer':
      return 'integer'
    case 'number':
      return 'number'
    case 'date':
      return 'date'
    case 'timestamp':
    case 'timestamptz':
      return 'datetime'
    case 'time':
      return 'time'
    case 'json':
      return 'json'
    case 'enum':
      return 'enum'
    case 'uuid':
      return 'uuid'
    default:
      return 'text'
  }
}

const pad = (n: number, w = 2): string => String(n).padStart(w, '0')

/** A Date as `YYYY-MM-DDTHH:mm:ss` in local time (what datetime-local shows). */
export function toLocalDateTime(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
}

const DATE_RE = /^\d{4}-\d{2}-\d{2}$/
const DATETIME_RE = /^(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2})(:\d{2})?(\.\d+)?$/
const TIME_RE = /^(\d{2}:\d{2})(:\d{2})?(\.\d+)?$/
const INT_RE = /^[-+]?\d+$/
const NUM_RE = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/** A row's value → the input's initial value. */
export function toInput(c: Column, value: unknown, mode: 'create' | 'edit' = 'edit'): InputValue {
  const kind = inputKind(c, mode)
  if (kind === 'checkbox') return value === true
  if (value === null || value === undefined) return ''
  switch (kind) {
    case 'tristate':
      return value === true ? 'true' : value === false ? 'false' : ''
    case 'json':
      return JSON.stringify(value, null, 2)
    case 'date':
      return String(value).slice(0, 10)
    case 'datetime': {
      const s = String(value)
      if (c.kind === 'timestamptz') {
        const d = new Date(s)
        return Number.isNaN(d.getTime()) ? s : toLocalDateTime(d)
      }
      const m = DATETIME_RE.exec(s.replace(/(Z|[+-]\d{2}(:?\d{2})?)$/, ''))
      return m ? `${m[1]}T${m[2]}${m[3] ?? ':00'}` : s
    }
    case 'time': {
      const m = TIME_RE.exec(String(value))
      return m ? `${m[1]}${m[2] ?? ':00'}` : String(value)
    }
    default:
      return typeof value === 'object' ? JSON.stringify(value) : String(value)
  }
}

export type Coerced = { ok: true; value: unknown } | { ok: false; error: string }

export function isBlank(v: InputValue): boolean {
  return typeof v === 'string' && v.trim() === ''
}

/**
 * An input's value → the JSON value to send. A blank input is NULL when the column is nullable,
 * and an empty string for a NOT NULL text column; otherwise it is an error.
 */
export function fromInput(c: Column, input: InputValue): Coerced {
  const kind = inputKind(c)
  if (kind === 'checkbox') return { ok: true, value: input === true || input === 'true' }
  const text = typeof input === 'string' ? input : String(input)
  if (isBlank(text)) {
    if (c.nullable) return { ok: true, value: null }
    if (kind === 'text') return { ok: true, value: text }
    return { ok: false, error: 'is required' }
  }
  const t = text.trim()
  switch (kind) {
    case 'tristate':
      if (t === 'true' || t === 'false') return { ok: true, value: t === 'true' }
      return { ok: false, error: 'must be true or false' }
    case 'integer': {
      if (!INT_RE.test(t)) return { ok: false, error: 'must be a whole number' }
      const n = Number(t)
      return Number.isSafeInteger(n) ? { ok: true, value: n } : { ok: true, value: t.replace(/^\+/, '') }
    }
    case 'number': {
      if (!NUM_RE.test(t)) return { ok: false, error: 'must be a number' }
      return { ok: true, value: Number(t) }
    }
    case 'date':
      return DATE_RE.test(t) ? { ok: true, value: t } : { ok: false, error: 'must be a date (YYYY-MM-DD)' }
    case 'datetime': {
      const m = DATETIME_RE.exec(t)
      if (!m) return { ok: false, error: 'must be a date and time' }
      const local = `${m[1]}T${m[2]}${m[3] ?? ':00'}`
      if (c.kind === 'timestamptz') {
        const d = new Date(local)
        if (Number.isNaN(d.getTime())) return { ok: false, error: 'must be a date and time' }
        return { ok: true, value: d.toISOString() }
      }
      return { ok: true, value: local }
    }
    case 'time': {
      const m = TIME_RE.exec(t)
      return m ? { ok: true, value: `${m[1]}${m[2] ?? ':00'}` } : { ok: false, error: 'must be a time (HH:MM)' }
    }
    case 'json':
      try {
        return { ok: true, value: JSON.parse(t) as unknown }
      } catch (err) {
        return { ok: false, error: `must be valid JSON (${err instanceof Error ? err.message : 'parse error'})` }
      }
    case 'uuid':
      return UUID_RE.test(t) ? { ok: true, value: t.toLowerCase() } : { ok: false, error: 'must be a UUID' }
    case 'enum':
      return c.enumValues?.includes(t) ? { ok: true, value: t } : { ok: false, error: `must be one of ${(c.enumValues ?? []).join(', ')}` }
    default:
      if (c.maxLength !== null && text.length > c.maxLength) {
        return { ok: false, error: `must be at most ${c.maxLength} characters` }
      }
      return { ok: true, value: text }
  }
}
