// View, edit or create one row: a form generated from the column types, server errors per field,
// and links to the related rows.

import { Icon } from './Icon.tsx'
import { useId, useMemo, useState, type FormEvent } from 'react'
import type { Table } from '../api/openapi.ts'
import type { Row } from '../api/rows.ts'
import { useInsertRow, useUpdateRow } from '../api/mutations.ts'
import { Field } from '../forms/Field.tsx'
import { type FieldErrors, type FormValues, buildPayload, initialValues, isEditable } from '../forms/payload.ts'
import { mapFieldErrors } from '../forms/errors.ts'
import { toSearch, equalsQuery } from '../filters/query.ts'
import { tableHref } from '../router/hash.ts'
import { Modal } from './Modal.tsx'
import { useToast } from './Toasts.tsx'

export type DialogState = { mode: 'create' } | { mode: 'edit'; row: Row } | null

export function RowDialog({
  table,
  state,
  onClose,
  onDelete,
}: {
  table: Table
  state: DialogState
  onClose: () => void
  onDelete: (row: Row) => void
}) {
  const titleId = useId()
  return (
    <Modal open={state !== null} onClose={onClose} labelledBy={titleId} className="row-dialog">
      {state ? (
        <RowForm
          key={state.mode === 'edit' ? JSON.stringify(state.row) : 'create'}
          table={table}
          row={state.mode === 'edit' ? state.row : null}
          titleId={titleId}
          onClose={onClose}
          onDelete={onDelete}
        />
      ) : null}
    </Modal>
  )
}

function RowForm({
  table,
  row,
  titleId,
  onClose,
  onDelete,
}: {
  table: Table
  row: Row | null
  titleId: string
  onClose: () => void
  onDelete: (row: Row) => void
}) {
  const mode = row ? 'edit' : 'create'
  const readOnly = mode === 'edit' ? !table.canUpdate || table.pk.length === 0 : !table.canInsert
  const initial = useMemo(() => initialValues(table.columns, row), [table, row])
  const [values, setValues] = useState<FormValues>(initial)
  const [errors, setErrors] = useState<FieldErrors>({})
  const [general, setGeneral] = useState<string | null>(null)
  const update = useUpdateRow(table)
  const insert = useInsertRow(table)
  const toast = useToast()
  const busy = update.isPending || insert.isPending
  const pkText = row ? table.pk.map((c) => String(row[c])).join(', ') : ''

  async function submit(e: FormEvent) {
    e.preventDefault()
    if (readOnly) return
    const { body, errors: localErrors } = buildPayload(table.columns, values, initial, mode)
    setErrors(localErrors)
    setGeneral(Object.keys(localErrors).length ? 'Fix the highlighted fields.' : null)
    if (Object.keys(localErrors).length) {
      focusField(Object.keys(localErrors)[0])
      return
    }
    if (mode === 'edit' && Object.keys(body).length === 0) {
      onClose()
      return
    }
    try {
      if (row) await update.mutateAsync({ original: row, changes: body })
      else await insert.mutateAsync(body)
      toast(row ? `Saved ${table.name} ${pkText}` : `Inserted a row into ${table.name}`)
      onClose()
    } catch (err) {
      const mapped = mapFieldErrors(err, table.columns.map((c) => c.name))
      setErrors(mapped.fields)
      setGeneral(mapped.general)
      const first = Object.keys(mapped.fields)[0]
      if (first) focusField(first)
    }
  }

  return (
    <form className="modal-body" onSubmit={submit} noValidate>
      <header className="modal-head">
        <h2 id={titleId}>
          {mode === 'create' ? `New row in ${table.name}` : `${table.name} ${pkText ? `· ${pkText}` : ''}`}
        </h2>
        {readOnly ? <span className="badge">read-only</span> : null}
        <button type="button" className="icon-btn" aria-label="Close" onClick={onClose}>
          <Icon name="close" />
        </button>
      </header>
      {general ? (
        <div className="banner error" role="alert" data-testid="form-error">
          {general}
        </div>
      ) : null}
      <div className="fields">
        {table.columns.map((c) => (
          <Field
            key={c.name}
            column={c}
            mode={mode}
            value={values[c.name] ?? ''}
            error={errors[c.name]}
            disabled={readOnly || busy || !isEditable(c, mode)}
            onChange={(v) => {
              setValues((old) => ({ ...old, [c.name]: v }))
              if (errors[c.name]) setErrors(({ [c.name]: _, ...rest }) => rest)
            }}
          />
        ))}
      </div>
      {row ? <Relations table={table} row={row} onNavigate={onClose} /> : null}
      <footer className="modal-actions">
        {row && table.canDelete && table.pk.length > 0 ? (
          <button type="button" className="btn danger ghost" onClick={() => onDelete(row)} disabled={busy}>
            Delete…
          </button>
        ) : null}
        <span className="spacer" />
        <button type="button" className="btn" onClick={onClose}>
          {readOnly ? 'Close' : 'Cancel'}
        </button>
        {readOnly ? null : (
          <button type="submit" className="btn primary" disabled={busy}>
            {busy ? 'Saving…' : mode === 'create' ? 'Insert row' : 'Save'}
          </button>
        )}
      </footer>
    </form>
  )
}

function focusField(name: string | undefined) {
  if (!name) return
  requestAnimationFrame(() => document.getElementById(`field-${name}`)?.focus())
}

function Relations({ table, row, onNavigate }: { table: Table; row: Row; onNavigate: () => void }) {
  const toOne = table.columns.filter((c) => c.fk && row[c.name] !== null && row[c.name] !== undefined)
  if (toOne.length === 0 && table.referencedBy.length === 0) return null
  return (
    <section className="relations" aria-label="Related rows">
      <h3>Related</h3>
      <ul>
        {toOne.map((c) => (
          <li key={c.name}>
            <a href={tableHref(c.fk!.table, toSearch(equalsQuery(c.fk!.column, row[c.name])))} onClick={onNavigate}>
              {c.fk!.table} where {c.fk!.column} = {String(row[c.name])}
            </a>
          </li>
        ))}
        {table.referencedBy.map((ref) => (
          <li key={`${ref.table}.${ref.column}`}>
            <a href={tableHref(ref.table, toSearch(equalsQuery(ref.column, row[ref.refColumn])))} onClick={onNavigate}>
              {ref.table} where {ref.column} = {String(row[ref.refColumn])}
            </a>
          </li>
        ))}
      </ul>
    </section>
  )
}
