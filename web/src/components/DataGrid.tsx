// The rows of one page: sortable headers, foreign-key links, keyboard navigation
// (arrows, Home/End, Enter to open a row, Delete to delete it).

import { useEffect, useRef, useState, type KeyboardEvent, type MouseEvent } from 'react'
import type { Column, Table } from '../api/openapi.ts'
import { type Row, rowKey } from '../api/rows.ts'
import { type OrderTerm, equalsQuery, toSearch } from '../filters/query.ts'
import { tableHref } from '../router/hash.ts'
import { Icon } from './Icon.tsx'

export function formatCell(value: unknown): { text: string; className: string } {
  if (value === null || value === undefined) return { text: 'NULL', className: 'null' }
  if (typeof value === 'boolean') return { text: value ? 'true' : 'false', className: 'bool' }
  if (typeof value === 'number') return { text: String(value), className: 'num' }
  if (typeof value === 'object') return { text: JSON.stringify(value), className: 'json' }
  return { text: String(value), className: '' }
}

interface Props {
  table: Table
  columns: string[]
  rows: Row[]
  order: OrderTerm[]
  onSort: (column: string, add: boolean) => void
  onOpen: (row: Row) => void
  onDelete: (row: Row) => void
  busy: boolean
}

export function DataGrid({ table, columns, rows, order, onSort, onOpen, onDelete, busy }: Props) {
  const [active, setActive] = useState<{ r: number; c: number }>({ r: -1, c: 0 })
  const ref = useRef<HTMLTableElement>(null)
  const byName = new Map(table.columns.map((c) => [c.name, c]))
  const canDelete = table.canDelete && table.pk.length > 0
  const nCols = columns.length + 1 // + the actions column

  useEffect(() => {
    const el = ref.current?.querySelector<HTMLElement>(`[data-cell="${active.r}:${active.c}"]`)
    if (el && ref.current?.contains(document.activeElement)) el.focus()
  }, [active])

  function onKeyDown(e: KeyboardEvent<HTMLTableElement>) {
    const maxR = rows.length - 1
    let { r, c } = active
    switch (e.key) {
      case 'ArrowDown': r = Math.min(maxR, r + 1); break
      case 'ArrowUp': r = Math.max(-1, r - 1); break
      case 'ArrowRight': c = Math.min(nCols - 1, c + 1); break
      case 'ArrowLeft': c = Math.max(0, c - 1); break
      case 'Home': c = 0; if (e.ctrlKey) r = -1; break
      case 'End': c = nCols - 1; if (e.ctrlKey) r = maxR; break
      case 'Enter': {
        const row = rows[r]
        if (!row || e.target instanceof HTMLButtonElement) return
        e.preventDefault()
        // Enter on a foreign key follows it; Shift+Enter (or any other cell) opens the row.
        const link = ref.current?.querySelector<HTMLAnchorElement>(`[data-cell="${r}:${c}"] a.fk`)
        if (link && !e.shiftKey) link.click()
        else onOpen(row)
        return
      }
      case 'Delete': {
        const row = rows[r]
        if (row && canDelete) {
          e.preventDefault()
          onDelete(row)
        }
        return
      }
      default:
        return
    }
    e.preventDefault()
    setActive({ r, c })
  }

  const tab = (r: number, c: number) => (active.r === r && active.c === c ? 0 : -1)
  // Before any focus, the first header cell is the grid's tab stop.
  const focusCell = (r: number, c: number) => () => setActive({ r, c })

  return (
    <div className={`grid-wrap${busy ? ' busy' : ''}`}>
      <table
        ref={ref}
        className="grid"
        role="grid"
        aria-label={`${table.name} rows`}
        aria-rowcount={rows.length + 1}
        aria-busy={busy}
        onKeyDown={onKeyDown}
      >
        <thead>
          <tr role="row">
            <th role="columnheader" className="actions-col" data-cell="-1:0" tabIndex={tab(-1, 0)} onFocus={focusCell(-1, 0)}>
              <span className="sr-only">Actions</span>
            </th>
            {columns.map((name, i) => (
              <HeaderCell
                key={name}
                column={byName.get(name)}
                name={name}
                term={order.find((o) => o.column === name)}
                rank={order.length > 1 ? order.findIndex((o) => o.column === name) + 1 : 0}
                cell={`-1:${i + 1}`}
                tabIndex={tab(-1, i + 1)}
                onFocus={focusCell(-1, i + 1)}
                onSort={onSort}
              />
            ))}
          </tr>
        </thead>
        <tbody>
          {rows.map((row, r) => (
            <tr key={rowKey(table, row)} role="row" onDoubleClick={() => onOpen(row)} aria-rowindex={r + 2}>
              <td role="gridcell" className="actions-col" data-cell={`${r}:0`} tabIndex={tab(r, 0)} onFocus={focusCell(r, 0)}>
                <button type="button" className="icon-btn" tabIndex={-1} aria-label={`Open row ${r + 1}`} onClick={() => onOpen(row)}>
                  <Icon name="open" />
                </button>
                {canDelete ? (
                  <button type="button" className="icon-btn danger" tabIndex={-1} aria-label={`Delete row ${r + 1}`} onClick={() => onDelete(row)}>
                    <Icon name="trash" />
                  </button>
                ) : null}
              </td>
              {columns.map((name, i) => (
                <DataCell
                  key={name}
                  column={byName.get(name)}
                  value={row[name]}
                  cell={`${r}:${i + 1}`}
                  tabIndex={tab(r, i + 1)}
                  onFocus={focusCell(r, i + 1)}
                />
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  )
}

function HeaderCell({
  column,
  name,
  term,
  rank,
  cell,
  tabIndex,
  onFocus,
  onSort,
}: {
  column: Column | undefined
  name: string
  term: OrderTerm | undefined
  rank: number
  cell: string
  tabIndex: number
  onFocus: () => void
  onSort: (column: string, add: boolean) => void
}) {
  const sort = term ? (term.dir === 'asc' ? 'ascending' : 'descending') : 'none'
  const click = (e: MouseEvent | KeyboardEvent) => onSort(name, e.shiftKey)
  return (
    <th
      role="columnheader"
      aria-sort={sort}
      data-cell={cell}
      data-column={name}
      tabIndex={tabIndex}
      onFocus={onFocus}
      onClick={click}
      onKeyDown={(e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault()
          e.stopPropagation()
          click(e)
        }
      }}
      title={`Sort by ${name} (shift-click to add)`}
    >
      <span className="th-inner">
        <span className="th-name">
          {column?.isPk ? (
            <span className="key">
              <Icon name="key" size={11} label="primary key" />
            </span>
          ) : null}
          {name}
        </span>
        <span className="th-type">{column ? column.format || column.kind : ''}</span>
        <span className="sort" aria-hidden="true">
          {term ? (term.dir === 'asc' ? '▲' : '▼') : ''}
          {rank > 0 ? <sup>{rank}</sup> : null}
        </span>
      </span>
    </th>
  )
}

function DataCell({
  column,
  value,
  cell,
  tabIndex,
  onFocus,
}: {
  column: Column | undefined
  value: unknown
  cell: string
  tabIndex: number
  onFocus: () => void
}) {
  const { text, className } = formatCell(value)
  const fk = column?.fk
  return (
    <td role="gridcell" className={className} data-cell={cell} tabIndex={tabIndex} onFocus={onFocus} title={text.length > 40 ? text : undefined}>
      {fk && value !== null && value !== undefined ? (
        <a
          className="fk"
          href={tableHref(fk.table, toSearch(equalsQuery(fk.column, value)))}
          tabIndex={-1}
          aria-label={`${text}: open ${fk.table} where ${fk.column} = ${text}`}
          onKeyDown={(e) => e.stopPropagation()}
        >
          {text}
          <Icon name="link" size={11} />
        </a>
      ) : (
        <span className="cell-text">{text}</span>
      )}
    </td>
  )
}
