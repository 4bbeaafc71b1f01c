// Writes with optimistic updates: the grid changes at once and is rolled back on error.

import { useMutation, useQueryClient, type QueryClient, type QueryKey } from '@tanstack/react-query'
import { useApi, rowsKey } from './hooks.ts'
import type { Table } from './openapi.ts'
import { type Page, type Row, deleteRow, insertRow, rowKey, updateRow } from './rows.ts'

type Snapshot = [QueryKey, Page | undefined][]

async function snapshot(qc: QueryClient, table: string): Promise<Snapshot> {
  await qc.cancelQueries({ queryKey: rowsKey(table) })
  return qc.getQueriesData<Page>({ queryKey: rowsKey(table) })
}

function restore(qc: QueryClient, snap: Snapshot | undefined): void {
  for (const [key, data] of snap ?? []) qc.setQueryData(key, data)
}

/** After any write every table may have changed (views, triggers): refetch what is shown. */
function refresh(qc: QueryClient): Promise<void> {
  return qc.invalidateQueries({ queryKey: ['rows'] })
}

export function applyUpdate(page: Page, table: Table, original: Row, changes: Row): Page {
  const key = rowKey(table, original)
  return { ...page, rows: page.rows.map((r) => (rowKey(table, r) === key ? { ...r, ...changes } : r)) }
}

export function applyDelete(page: Page, table: Table, row: Row): Page {
  const key = rowKey(table, row)
  const rows = page.rows.filter((r) => rowKey(table, r) !== key)
  const removed = page.rows.length - rows.length
  return { ...page, rows, total: page.total === null ? null : page.total - removed }
}

export function useUpdateRow(table: Table) {
  const api = useApi()
  const qc = useQueryClient()
  return useMutation({
    mutationFn: ({ original, changes }: { original: Row; changes: Row }) => updateRow(api, table, original, changes),
    onMutate: async ({ original, changes }) => {
      const snap = await snapshot(qc, table.name)
      qc.setQueriesData<Page>({ queryKey: rowsKey(table.name) }, (p) => (p ? applyUpdate(p, table, original, changes) : p))
      return { snap }
    },
    onError: (_err, _vars, ctx) => restore(qc, ctx?.snap),
    onSettled: () => refresh(qc),
  })
}

export function useDeleteRow(table: Table) {
  const api = useApi()
  const qc = useQueryClient()
  return useMutation({
    mutationFn: (row: Row) => deleteRow(api, table, row),
    onMutate: async (row) => {
      const snap = await snapshot(qc, table.name)
      qc.setQueriesData<Page>({ queryKey: rowsKey(table.name) }, (p) => (p ? applyDelete(p, table, row) : p))
      return { snap }
    },
    onError: (_err, _row, ctx) => restore(qc, ctx?.snap),
    onSettled: () => refresh(qc),
  })
}

export function useInsertRow(table: Table) {
  const api = useApi()
  const qc = useQueryClient()
  return useMutation({
    mutationFn: (values: Row) => insertRow(api, table, values),
    onSettled: () => refresh(qc),
  })
}
