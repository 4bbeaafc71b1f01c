import { lazy, Suspense } from 'react'
import { Route, Router, Switch } from 'wouter'
import { useSchema } from './api/hooks.ts'
import { ApiError } from './api/errors.ts'
import { useAuth } from './auth/session.tsx'
import { useHashLocation, useHashSearch } from './router/hash.ts'
import { Layout } from './components/Layout.tsx'
import { Empty, Loading } from './components/States.tsx'
import { HomePage } from './pages/HomePage.tsx'
import { LoginPage } from './pages/LoginPage.tsx'
import { TablePage } from './pages/TablePage.tsx'

// The charts (uPlot) load only when the operations page is opened.
const OpsPage = lazy(() => import('./pages/OpsPage.tsx').then((m) => ({ default: m.OpsPage })))

function Routes() {
  const schema = useSchema()
  const { auth } = useAuth()
  const [path] = useHashLocation()
  const err = schema.error
  const rejected = err instanceof ApiError && (err.status === 401 || err.status === 403)
  if (path === '/login') return <LoginPage />
  if (rejected) {
    const reason = auth && auth.kind !== 'anon' ? `The server rejected your credentials: ${err.message}` : undefined
    return <LoginPage reason={reason} />
  }
  return (
    <Layout>
      <Switch>
        <Route path="/">
          <HomePage />
        </Route>
        <Route path="/tables/:name">{(params) => <TablePage name={decodeURIComponent(params.name)} />}</Route>
        <Route path="/ops">
          <Suspense fallback={<Loading label="Loading charts…" />}>
            <OpsPage />
          </Suspense>
        </Route>
        <Route>
          <Empty title="Page not found">
            <a href="#/">Back to the tables</a>
          </Empty>
        </Route>
      </Switch>
    </Layout>
  )
}

export function App() {
  return (
    <Router hook={useHashLocation} searchHook={useHashSearch} hrefs={useHashLocation.hrefs}>
      <Routes />
    </Router>
  )
}
