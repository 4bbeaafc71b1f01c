import { useEffect, useMemo, useState, type ReactNode } from 'react'
import { useSchema } from '../api/hooks.ts'
import { useAuth, decodeJwt } from '../auth/session.tsx'
import { navigate, tableHref, useHashLocation } from '../router/hash.ts'
import { Icon } from './Icon.tsx'

function principalLabel(auth: ReturnType<typeof useAuth>['auth']): string {
  if (!auth || auth.kind === 'anon') return 'anonymous'
  if (auth.kind === 'apikey') return 'API key'
  const info = decodeJwt(auth.token)
  return `JWT${info?.role ? ` · ${info.role}` : ''}`
}

export function Layout({ children }: { children: ReactNode }) {
  const { auth, signOut } = useAuth()
  const [path] = useHashLocation()
  const [menuOpen, setMenuOpen] = useState(false)
  useEffect(() => setMenuOpen(false), [path])
  const signedIn = auth !== null && auth.kind !== 'anon'
  return (
    <div className={`app${menuOpen ? ' menu-open' : ''}`}>
      <a className="skip-link" href="#main" onClick={(e) => { e.preventDefault(); document.getElementById('main')?.focus() }}>
        Skip to content
      </a>
      <header className="topbar">
        <button type="button" className="icon-btn menu-btn" aria-label="Tables menu" aria-expanded={menuOpen} aria-controls="sidebar" onClick={() => setMenuOpen(!menuOpen)}>
          <Icon name="menu" size={16} />
        </button>
        <a className="brand" href="#/">
          <span className="logo" aria-hidden="true">◆</span> Headwater
        </a>
        <nav className="topnav" aria-label="Sections">
          <a href="#/" aria-current={path === '/' || path.startsWith('/tables') ? 'page' : undefined}>
            Tables
          </a>
          <a href="#/ops" aria-current={path === '/ops' ? 'page' : undefined}>
            Operations
          </a>
        </nav>
        <span className="spacer" />
        <span className="principal" data-testid="principal" title="Who the console speaks as">
          {principalLabel(auth)}
        </span>
        {signedIn ? (
          <button type="button" className="btn small" onClick={() => { signOut(); navigate('/login') }}>
            Sign out
          </button>
        ) : (
          <a className="btn small" href="#/login">
            Sign in
          </a>
        )}
      </header>
      <div className="body">
        <Sidebar current={path.startsWith('/tables/') ? decodeURIComponent(path.slice(8)) : null} />
        <main id="main" tabIndex={-1}>
          {children}
        </main>
      </div>
    </div>
  )
}

function Sidebar({ current }: { current: string | null }) {
  const schema = useSchema()
  const [q, setQ] = useState('')
  const tables = useMemo(() => (schema.data?.tables ?? []).filter((t) => t.name.toLowerCase().includes(q.toLowerCase())), [schema.data, q])
  return (
    <aside id="sidebar" className="sidebar" aria-label="Tables">
      <input type="search" className="sidebar-search" placeholder="Find a table…" aria-label="Find a table" value={q} onChange={(e) => setQ(e.target.value)} />
      {schema.isPending ? <p className="muted small pad">Loading…</p> : null}
      {schema.isError ? <p className="muted small pad">Could not load tables.</p> : null}
      <ul className="table-list">
        {tables.map((t) => (
          <li key={t.name}>
            <a href={tableHref(t.name)} aria-current={current === t.name ? 'page' : undefined}>
              <span className="tname">{t.name}</span>
              {!t.canInsert && !t.canUpdate && !t.canDelete ? <span className="badge small" title="read-only" aria-label="read-only">ro</span> : null}
            </a>
          </li>
        ))}
        {schema.data && tables.length === 0 ? <li className="muted small pad">No match.</li> : null}
      </ul>
    </aside>
  )
}
