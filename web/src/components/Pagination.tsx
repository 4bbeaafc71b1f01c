import { PAGE_SIZES } from '../filters/query.ts'

export function Pagination({
  offset,
  limit,
  count,
  total,
  onOffset,
  onLimit,
}: {
  offset: number
  limit: number
  count: number
  total: number | null
  onOffset: (o: number) => void
  onLimit: (l: number) => void
}) {
  const from = count === 0 ? 0 : offset + 1
  const to = offset + count
  const hasNext = total !== null ? to < total : count === limit
  const lastOffset = total !== null && total > 0 ? Math.floor((total - 1) / limit) * limit : null
  const page = Math.floor(offset / limit) + 1
  const pages = total !== null ? Math.max(1, Math.ceil(total / limit)) : null
  return (
    <nav className="pagination" aria-label="Pages">
      <span className="muted" data-testid="range" aria-live="polite">
        {count === 0 ? 'No rows' : `Rows ${from.toLocaleString()}–${to.toLocaleString()}`}
        {total !== null ? ` of ${total.toLocaleString()}` : ''}
      </span>
      <span className="spacer" />
      <label className="muted small">
        Per page{' '}
        <select value={limit} onChange={(e) => onLimit(Number(e.target.value))}>
          {[...new Set([...PAGE_SIZES, limit])].sort((a, b) => a - b).map((n) => (
            <option key={n} value={n}>
              {n}
            </option>
          ))}
        </select>
      </label>
      <button type="button" className="btn small" onClick={() => onOffset(0)} disabled={offset === 0} aria-label="First page">
        «
      </button>
      <button type="button" className="btn small" onClick={() => onOffset(Math.max(0, offset - limit))} disabled={offset === 0} aria-label="Previous page">
        ‹ Prev
      </button>
      <span className="small" aria-label={`Page ${page}${pages ? ` of ${pages}` : ''}`}>
        {page}
        {pages ? ` / ${pages}` : ''}
      </span>
      <button type="button" className="btn small" onClick={() => onOffset(offset + limit)} disabled={!hasNext} aria-label="Next page">
        Next ›
      </button>
      <button type="button" className="btn small" onClick={() => lastOffset !== null && onOffset(lastOffset)} disabled={lastOffset === null || offset >= lastOffset} aria-label="Last page">
        »
      </button>
    </nav>
  )
}
