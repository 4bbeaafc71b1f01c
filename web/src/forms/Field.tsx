// One form field, its input chosen from the column type.

import type { Column } from '../api/openapi.ts'
import { type InputValue, inputKind } from './fields.ts'

export function typeLabel(c: Column): string {
  return c.format || c.kind
}

/** What the label says after the type: key, and what an insert needs (required, default, generated). */
export function fieldNotes(c: Column, mode: 'create' | 'edit'): string[] {
  const notes: string[] = []
  if (c.isPk) notes.push('key')
  if (c.generated) notes.push('generated')
  else if (c.required) notes.push('required')
  else if (mode === 'create' && c.hasDefault && !c.nullable) notes.push('has default')
  return notes
}

/**
 * The hint in an empty input: what leaving it blank means. On insert a blank column gets its
 * default (or the generated key); on an update it is NULL or, for a NOT NULL column, an error,
 * so "default" is only ever said on insert and never for a required column.
 */
export function placeholderOf(c: Column, mode: 'create' | 'edit'): string {
  if (mode === 'create') {
    if (c.generated) return 'generated'
    if (c.hasDefault) return 'default'
  }
  return c.nullable ? 'NULL' : ''
}

export function Field({
  column,
  value,
  error,
  disabled,
  mode,
  onChange,
}: {
  mode: 'create' | 'edit'
  column: Column
  value: InputValue
  error: string | undefined
  disabled: boolean
  onChange: (v: InputValue) => void
}) {
  const id = `field-${column.name}`
  const errId = `${id}-error`
  const kind = inputKind(column, mode)
  const common = {
    id,
    name: column.name,
    disabled,
    'aria-invalid': error ? true : undefined,
    'aria-describedby': error ? errId : undefined,
    'aria-required': mode === 'create' && column.required ? true : undefined,
  }
  const placeholder = placeholderOf(column, mode)
  const text = typeof value === 'string' ? value : ''

  let input
  switch (kind) {
    case 'checkbox':
      input = <input {...common} type="checkbox" checked={value === true} onChange={(e) => onChange(e.target.checked)} />
      break
    case 'tristate':
      input = (
        <select {...common} value={text} onChange={(e) => onChange(e.target.value)}>
          <option value="">{column.nullable ? 'NULL' : '(default)'}</option>
          <option value="true">true</option>
          <option value="false">false</option>
        </select>
      )
      break
    case 'enum':
      input = (
        <select {...common} value={text} onChange={(e) => onChange(e.target.value)}>
          <option value="">{mode === 'create' && column.hasDefault ? '(default)' : column.nullable ? 'NULL' : '— choose —'}</option>
          {(column.enumValues ?? []).map((v) => (
            <option key={v} value={v}>
              {v}
            </option>
          ))}
        </select>
      )
      break
    case 'json':
      input = (
        <textarea {...common} rows={4} spellCheck={false} className="mono" value={text} placeholder={placeholder} onChange={(e) => onChange(e.target.value)} />
      )
      break
    case 'date':
      input = <input {...common} type="date" value={text} onChange={(e) => onChange(e.target.value)} />
      break
    case 'datetime':
      input = <input {...common} type="datetime-local" step={1} value={text} onChange={(e) => onChange(e.target.value)} />
      break
    case 'time':
      input = <input {...common} type="time" step={1} value={text} onChange={(e) => onChange(e.target.value)} />
      break
    case 'integer':
    case 'number':
      // A text input: the browser's number input would swallow invalid text instead of showing an error.
      input = (
        <input
          {...common}
          type="text"
          inputMode={kind === 'integer' ? 'numeric' : 'decimal'}
          autoComplete="off"
          className="mono"
          value={text}
          placeholder={placeholder}
          onChange={(e) => onChange(e.target.value)}
        />
      )
      break
    default:
      input = (
        <input
          {...common}
          type="text"
          autoComplete="off"
          className={kind === 'uuid' ? 'mono' : undefined}
          maxLength={column.maxLength ?? undefined}
          value={text}
          placeholder={placeholder}
          onChange={(e) => onChange(e.target.value)}
        />
      )
  }

  return (
    <div className={`field${error ? ' has-error' : ''}${kind === 'checkbox' ? ' inline' : ''}`} data-field={column.name}>
      <label htmlFor={id}>
        <span className="field-name">{column.name}</span>
        <span className="field-type">
          {[typeLabel(column), ...fieldNotes(column, mode)].join(' · ')}
        </span>
      </label>
      {input}
      {column.fk ? (
        <span className="field-hint">
          → {column.fk.table}.{column.fk.column}
        </span>
      ) : null}
      {error ? (
        <span className="field-error" id={errId} role="alert">
          {error}
        </span>
      ) : null}
    </div>
  )
}
