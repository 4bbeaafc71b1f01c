import { useEffect, useRef, useState } from 'react'
import type { Table } from '../api/openapi.ts'

/** Choose the columns to select; key columns stay (rows must stay addressable). */
export function ColumnPicker({ table, selected, onChange }: { table: Table; selected: string[] | null; onChange: (s: string[] | null) => void }) {
  const [open, setOpen] = useState(false)
  const ref = useRef<HTMLDivElement>(null)
  const current = new Set(selected ?? table.columns.map((c) => c.name))
  useEffect(() => {
    if (!open) return
    const close = (e: MouseEvent) => {
      if (ref.current && !ref.current.contains(e.target as Node)) setOpen(false)
    }
    addEventListener('mousedown', close)
    return () => removeEventListener('mousedown', close)
  }, [open])

  function toggle(name: string, on: boolean) {
    const next = table.columns.map((c) => c.name).filter((n) => (n === name ? on : current.has(n)))
    onChange(next.length === table.columns.length ? null : next)
  }

  const hidden = table.columns.length - current.size
  return (
    <div className="popover-wrap" ref={ref} onKeyDown={(e) => e.key === 'Escape' && setOpen(false)}>
      <button type="button" className="btn" aria-expanded={open} aria-haspopup="true" onClick={() => setOpen(!open)}>
        Columns{hidden > 0 ? ` (${current.size}/${table.columns.length})` : ''}
      </button>
      {open ? (
        <div className="popover" role="group" aria-label="Columns to show">
          {table.columns.map((c) => (
            <label key={c.name} className="check">
              <input type="checkbox" checked={current.has(c.name)} disabled={c.isPk} onChange={(e) => toggle(c.name, e.target.checked)} />
              <span>{c.name}</span>
              <span className="muted small">{c.format || c.kind}</span>
            </label>
          ))}
          <div className="popover-actions">
            <button type="button" className="btn small" onClick={() => onChange(null)}>
              Show all
            </button>
          </div>
        </div>
      ) : null}
    </div>
  )
}
