import { useEffect } from 'react'
import { useSchema } from '../api/hooks.ts'
import { tableHref } from '../router/hash.ts'
import { Empty, ErrorBox, Loading } from '../components/States.tsx'

export function HomePage() {
  const schema = useSchema()
  useEffect(() => {
    document.title = 'Tables · Headwater'
  }, [])
  if (schema.isPending) return <Loading label="Loading the schema…" />
  if (schema.isError) return <ErrorBox error={schema.error} onRetry={() => void schema.refetch()} />
  const { tables } = schema.data
  if (tables.length === 0) return <Empty title="No tables">There are no tables you may read.</Empty>
  return (
    <section aria-labelledby="home-title" className="home">
      <h1 id="home-title">Tables</h1>
      <p className="muted">Every table and view you may read. Open one to browse, filter and edit its rows.</p>
      <ul className="cards">
        {tables.map((t) => (
          <li key={t.name}>
            <a className="card" href={tableHref(t.name)}>
              <strong>{t.name}</strong>
              <span className="muted small">
                {t.columns.length} columns
                {t.pk.length ? ` · key ${t.pk.join(', ')}` : ''}
                {!t.canInsert && !t.canUpdate && !t.canDelete ? ' · read-only' : ''}
              </span>
              <span className="muted small">
                {t.columns
                  .filter((c) => c.fk)
                  .map((c) => `→ ${c.fk!.table}`)
                  .join('  ')}
              </span>
            </a>
          </li>
        ))}
      </ul>
    </section>
  )
}
