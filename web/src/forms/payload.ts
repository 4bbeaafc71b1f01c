// Form state → the body of a POST (create) or PATCH (edit), with per-field errors.

import type { Column } from '../api/openapi.ts'
import type { Row } from '../api/rows.ts'
import { type InputValue, fromInput, inputKind, isBlank, toInput } from './fields.ts'

export type FormMode = 'create' | 'edit'
export type FormValues = Record<string, InputValue>
export type FieldErrors = Record<string, string>

export interface Payload {
  body: Row
  errors: FieldErrors
}

/** Initial form values: from the row when editing, blank when creating. */
export function initialValues(columns: Column[], row: Row | null): FormValues {
  const values: FormValues = {}
  for (const c of columns) {
    if (row) values[c.name] = toInput(c, row[c.name])
    else if (inputKind(c, 'create') === 'checkbox') values[c.name] = c.defaultValue === true || c.defaultValue === 'true'
    else values[c.name] = toInput(c, null, 'create')
  }
  return values
}

/** Whether a column is edited in this mode (key columns are fixed once a row exists). */
export function isEditable(c: Column, mode: FormMode): boolean {
  return mode === 'create' || !c.isPk
}

export function buildPayload(columns: Column[], values: FormValues, initial: FormValues, mode: FormMode): Payload {
  const body: Row = {}
  const errors: FieldErrors = {}
  for (const c of columns) {
    if (!isEditable(c, mode) || !(c.name in values)) continue
    const v = values[c.name] as InputValue
    if (mode === 'edit') {
      if (v === initial[c.name]) continue // unchanged: not sent
    } else if (isBlank(v)) {
      // Left empty on insert: the server applies the default (or NULL).
      if (c.required && !c.hasDefault) errors[c.name] = 'is required'
      continue
    }
    const r = fromInput(c, v)
    if (r.ok) body[c.name] = r.value
    else errors[c.name] = r.error
  }
  return { body, errors }
}

export function changedFields(values: FormValues, initial: FormValues): string[] {
  return Object.keys(values).filter((k) => values[k] !== initial[k])
}
