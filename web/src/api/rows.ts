// Table reads and writes in PostgREST's dialect.

import { type ApiClient, parseContentRange } from './client.ts'
import type { Table } from './openapi.ts'
import { encodeParams } from '../filters/query.ts'

export type Row = Record<string, unknown>

export interface Page {
  rows: Row[]
  /** Total matching rows when the server counted them. */
  total: number | null
  offset: number
}

export function tablePath(table: string): string {
  return `/${encodeURIComponent(table)}`
}

export async function fetchPage(api: ApiClient, table: string, search: string, signal?: AbortSignal): Promise<Page> {
  const res = await api.request<Row[]>(tablePath(table), { query: search, prefer: ['count=exact'], signal })
  const range = parseContentRange(res.headers.get('Content-Range'))
  const rows = Array.isArray(res.data) ? res.data : []
  return { rows, total: range?.total ?? null, offset: range?.from ?? 0 }
}

/** `id=eq.5` (and one term per key column) — the filter that addresses one row. */
export function rowFilter(table: Table, row: Row): string {
  if (table.pk.length === 0) throw new Error(`Table ${table.name} has no primary key; rows cannot be addressed`)
  return encodeParams(
    table.pk.map((col) => {
      const v = row[col]
      return [col, v === null || v === undefined ? 'is.null' : `eq.${String(v)}`] as [string, string]
    }),
  )
}

export function rowKey(table: Table, row: Row): string {
  return table.pk.length > 0 ? table.pk.map((c) => String(row[c])).join('\u0000') : JSON.stringify(row)
}

export async function insertRow(api: ApiClient, table: Table, values: Row): Promise<Row | null> {
  const res = await api.request<Row[] | Row>(tablePath(table.name), {
    method: 'POST',
    body: values,
    prefer: ['return=representation'],
  })
  return firstRow(res.data)
}

export async function updateRow(api: ApiClient, table: Table, original: Row, changes: Row): Promise<Row | null> {
  const res = await api.request<Row[] | Row>(tablePath(table.name), {
    method: 'PATCH',
    query: rowFilter(table, original),
    body: changes,
    prefer: ['return=representation'],
  })
  return firstRow(res.data)
}

export async function deleteRow(api: ApiClient, table: Table, row: Row): Promise<void> {
  await api.request<unknown>(tablePath(table.name), { method: 'DELETE', query: rowFilter(table, row) })
}

function firstRow(data: Row[] | Row | null): Row | null {
  if (Array.isArray(data)) return data[0] ?? null
  return data && typeof data === 'object' ? data : null
}
