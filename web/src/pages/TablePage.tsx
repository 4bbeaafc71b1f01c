import { useEffect, useMemo, useState, type FormEvent } from 'react'
import { findTable, type Table } from '../api/openapi.ts'
import { usePage, useSchema } from '../api/hooks.ts'
import { useDeleteRow } from '../api/mutations.ts'
import type { Row } from '../api/rows.ts'
import { describeError } from '../api/errors.ts'
import { type TableQuery, filterParams, fromSearch, toSearch, toggleOrder, encodeParams } from '../filters/query.ts'
import { countConditions, type Group } from '../filters/model.ts'
import { navigate, useHashSearch } from '../router/hash.ts'
import { DataGrid } from '../components/DataGrid.tsx'
import { FilterBuilder } from '../components/FilterBuilder.tsx'
import { ColumnPicker } from '../components/ColumnPicker.tsx'
import { Pagination } from '../components/Pagination.tsx'
import { QueryPreview } from '../components/QueryPreview.tsx'
import { RowDialog, type DialogState } from '../components/RowDialog.tsx'
import { ConfirmDialog } from '../components/ConfirmDialog.tsx'
import { Empty, ErrorBox, Loading } from '../components/States.tsx'
import { useToast } from '../components/Toasts.tsx'
import { Icon } from '../components/Icon.tsx'

export function TablePage({ name }: { name: string }) {
  const schema = useSchema()
  useEffect(() => {
    document.title = `${name} · Headwater`
  }, [name])
  if (schema.isPending) return <Loading label="Loading the schema…" />
  if (schema.isError) return <ErrorBox error={schema.error} onRetry={() => void schema.refetch()} />
  const table = findTable(schema.data, name)
  if (!table) {
    return (
      <Empty title={`No table called “${name}”`}>
        It does not exist, or you may not read it. <a href="#/">See the tables you can read</a>.
      </Empty>
    )
  }
  return <TableView key={table.name} table={table} />
}

function TableView({ table }: { table: Table }) {
  const search = useHashSearch()
  const parsed = useMemo(() => fromSearch(search), [search])
  // Without an order, pages are not stable (SQL returns rows in any order): default to the key.
  const query = useMemo(
    () => (parsed.order.length === 0 && table.pk.length > 0 ? { ...parsed, order: table.pk.map((column) => ({ column, dir: 'asc' as const, nulls: null })) } : parsed),
    [parsed, table],
  )
  const apiSearch = useMemo(() => toSearch(query), [query])
  const page = usePage(table.name, apiSearch)
  const [draft, setDraft] = useState<Group>(query.filter)
  const activeFilters = countConditions(query.filter) + query.extras.length
  const [showFilters, setShowFilters] = useState(activeFilters > 0)
  const [dialog, setDialog] = useState<DialogState>(null)
  const [toDelete, setToDelete] = useState<Row | null>(null)
  const del = useDeleteRow(table)
  const toast = useToast()

  useEffect(() => setDraft(parsed.filter), [parsed.filter])

  const setQuery = (next: TableQuery) => navigate(`/tables/${encodeURIComponent(table.name)}?${toSearch(next)}`)

  const draftSearch = encodeParams(filterParams(draft))
  const appliedFilterSearch = encodeParams(filterParams(query.filter))
  const dirty = draftSearch !== appliedFilterSearch

  function applyFilters(e?: FormEvent) {
    e?.preventDefault()
    setQuery({ ...query, filter: draft, offset: 0 })
  }

  const columns = useMemo(() => {
    const known = table.columns.map((c) => c.name)
    const chosen = query.select && !query.select.includes('*') ? query.select.filter((c) => known.includes(c)) : known
    const extra = Object.keys(page.data?.rows[0] ?? {}).filter((k) => !known.includes(k))
    return [...chosen, ...extra]
  }, [table, query.select, page.data])

  function confirmDelete() {
    const row = toDelete
    if (!row) return
    setToDelete(null)
    setDialog(null)
    del.mutate(row, {
      onSuccess: () => toast(`Deleted from ${table.name}`),
      onError: (err) => toast(`Delete failed, row restored: ${describeError(err)}`, 'error'),
    })
  }

  const rows = page.data?.rows ?? []
  return (
    <section className="table-page" aria-labelledby="table-title">
      <header className="toolbar">
        <h1 id="table-title">
          {table.name}
          {table.pk.length === 0 && !table.canInsert ? <span className="badge">view</span> : null}
        </h1>
        <span className="muted small" data-testid="total">
          {page.data?.total != null ? `${page.data.total.toLocaleString()} ${page.data.total === 1 ? 'row' : 'rows'}` : ''}
        </span>
        <span className="spacer" />
        <button type="button" className={`btn${showFilters ? ' active' : ''}`} aria-expanded={showFilters} aria-controls="filters" onClick={() => setShowFilters(!showFilters)}>
          Filters{activeFilters > 0 ? ` (${activeFilters})` : ''}
        </button>
        <ColumnPicker table={table} selected={query.select} onChange={(select) => setQuery({ ...query, select })} />
        <button type="button" className="btn" onClick={() => void page.refetch()} aria-label="Refresh" title="Refresh" disabled={page.isFetching}>
          <Icon name="refresh" />
        </button>
        {table.canInsert ? (
          <button type="button" className="btn primary" onClick={() => setDialog({ mode: 'create' })}>
            + Insert row
          </button>
        ) : null}
      </header>

      {showFilters ? (
        <form id="filters" className="filters-panel" onSubmit={applyFilters} aria-label="Filter builder">
          <FilterBuilder columns={table.columns} value={draft} onChange={setDraft} />
          <div className="filters-side">
            <QueryPreview table={table.name} search={draftSearch} label={dirty ? 'draft' : 'filter'} />
            {query.extras.length > 0 ? (
              <p className="muted small">
                Also kept from the URL: <code>{encodeParams(query.extras)}</code>
              </p>
            ) : null}
            <div className="row-actions">
              <button type="submit" className="btn primary" disabled={!dirty}>
                Apply
              </button>
              <button type="button" className="btn ghost" onClick={() => setQuery({ ...query, filter: { ...draft, items: [] }, extras: [], offset: 0 })}>
                Clear
              </button>
            </div>
          </div>
        </form>
      ) : null}

      <QueryPreview table={table.name} search={apiSearch} />

      {page.isPending ? (
        <Loading label={`Loading ${table.name}…`} />
      ) : page.isError ? (
        <ErrorBox error={page.error} onRetry={() => void page.refetch()} title={`Could not read ${table.name}`} />
      ) : rows.length === 0 ? (
        activeFilters > 0 ? (
          <Empty title="No rows match these filters">
            <button type="button" className="btn" onClick={() => setQuery({ ...query, filter: { ...query.filter, items: [] }, extras: [], offset: 0 })}>
              Clear filters
            </button>
          </Empty>
        ) : query.offset > 0 ? (
          <Empty title="No rows on this page">
            <button type="button" className="btn" onClick={() => setQuery({ ...query, offset: 0 })}>
              Back to the first page
            </button>
          </Empty>
        ) : (
          <Empty title={`${table.name} is empty`}>{table.canInsert ? 'Insert the first row with “+ Insert row”.' : null}</Empty>
        )
      ) : (
        <DataGrid
          table={table}
          columns={columns}
          rows={rows}
          order={query.order}
          busy={page.isFetching}
          onSort={(column, add) => setQuery({ ...query, order: toggleOrder(query.order, column, add), offset: 0 })}
          onOpen={(row) => setDialog({ mode: 'edit', row })}
          onDelete={(row) => setToDelete(row)}
        />
      )}

      {page.data ? (
        <Pagination
          offset={query.offset}
          limit={query.limit}
          count={rows.length}
          total={page.data.total}
          onOffset={(offset) => setQuery({ ...query, offset })}
          onLimit={(limit) => setQuery({ ...query, limit, offset: 0 })}
        />
      ) : null}

      <RowDialog table={table} state={dialog} onClose={() => setDialog(null)} onDelete={(row) => setToDelete(row)} />
      <ConfirmDialog
        open={toDelete !== null}
        title={`Delete this row from ${table.name}?`}
        message={toDelete ? `${table.pk.map((c) => `${c} = ${String(toDelete[c])}`).join(', ')}. This cannot be undone.` : ''}
        busy={del.isPending}
        onConfirm={confirmDelete}
        onCancel={() => setToDelete(null)}
      />
    </section>
  )
}
