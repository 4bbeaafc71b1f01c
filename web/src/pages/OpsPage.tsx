// Operations: live charts fed by GET /-/stats every few seconds. A feature the server does not
// use (a reported null: no rate limit, no breakers) says so, never a made-up zero; a field an
// older server leaves out is "not reported". Errors are 5xx; a caller's 4xx are shown apart.

import { useEffect, useState, type ReactNode } from 'react'
import { useQuery } from '@tanstack/react-query'
import { useApi } from '../api/hooks.ts'
import { ApiError } from '../api/errors.ts'
import { type Feature, type Sample, type Stats, appendSample, derive, errorCounts, errorWindow, features, isStats, lifetimeHitRatio } from '../stats/model.ts'
import { Chart } from '../components/Chart.tsx'
import { fmt } from '../components/format.ts'
import { ErrorBox, Loading } from '../components/States.tsx'

export const STATS_INTERVAL_MS = 2000

const COLORS = { blue: '#3b82f6', green: '#10b981', amber: '#f59e0b', red: '#ef4444', violet: '#8b5cf6', slate: '#64748b' }

export function OpsPage() {
  const api = useApi()
  const [history, setHistory] = useState<Sample[]>([])
  const stats = useQuery({
    queryKey: ['stats'],
    queryFn: async ({ signal }) => {
      const res = await api.request<unknown>('/-/stats', { signal })
      if (!isStats(res.data)) throw new ApiError(res.status, 'The stats endpoint answered with an unexpected shape', 'BAD_STATS')
      return res.data
    },
    refetchInterval: STATS_INTERVAL_MS,
    refetchIntervalInBackground: false,
    retry: (n, err) => !(err instanceof ApiError && err.status === 404) && n < 2,
  })

  useEffect(() => {
    document.title = 'Operations · Headwater'
  }, [])
  useEffect(() => {
    if (stats.data) setHistory((h) => appendSample(h, { t: stats.dataUpdatedAt / 1000, stats: stats.data }))
  }, [stats.data, stats.dataUpdatedAt])

  if (stats.isPending) return <Loading label="Waiting for the first stats…" />
  if (stats.isError && !stats.data) {
    if (stats.error instanceof ApiError && stats.error.status === 404) {
      return <ErrorBox title="Not available" error="This server has no /-/stats endpoint yet, so there is nothing to chart." />
    }
    return <ErrorBox error={stats.error} onRetry={() => void stats.refetch()} title="Could not read /-/stats" />
  }
  const s = stats.data as Stats
  const d = derive(history)
  const warming = d.t.length === 0
  const has = features(s)
  const lifetime = errorCounts(s)
  const window = errorWindow(history)

  return (
    <section className="ops" aria-labelledby="ops-title">
      <header className="toolbar">
        <h1 id="ops-title">Operations</h1>
        <span className="muted small" aria-live="off" data-testid="lifetime">
          up {formatDuration(s.uptime_s)} · since start: {s.requests_total.toLocaleString()} requests,{' '}
          {countOf(lifetime.server, 'server error')} (5xx, {pct(s.requests_total ? lifetime.server / s.requests_total : 0)})
          {lifetime.client !== null ? `, ${countOf(lifetime.client, 'client error')} (4xx)` : ''} · refreshing every {STATS_INTERVAL_MS / 1000} s
        </span>
        <span className="spacer" />
        {stats.isError ? <span className="badge warn">stale: {stats.error.message}</span> : <span className="badge ok live">live</span>}
      </header>
      {warming ? <p className="muted small">Collecting a second sample to compute rates…</p> : null}

      <div className="panels">
        <Panel title="Requests / s" value={last(d.requestsPerSec)} unit="">
          <Chart title="Requests per second" t={d.t} unit="" series={[{ label: 'req/s', values: d.requestsPerSec, color: COLORS.blue }]} />
        </Panel>
        <Panel title="Latency (last 60 s)" value={s.latency_ms?.p99 ?? null} unit=" ms" valueLabel="p99" feature={s.latency_ms != null ? ON : UNREPORTED}>
          <Chart title="Latency" t={d.t} unit="ms" series={[{ label: 'p50', values: d.p50, color: COLORS.green }, { label: 'p99', values: d.p99, color: COLORS.amber }]} />
        </Panel>
        <Panel
          title="Error rate (5xx)"
          value={window ? window.serverPct : null}
          unit="%"
          note={window ? windowNote(window) : undefined}
          testId="error-rate"
        >
          <Chart
            title="Error rate"
            t={d.t}
            unit="%"
            series={[
              { label: '5xx %', values: d.errorRatePct, color: COLORS.red },
              { label: '4xx %', values: d.clientErrorRatePct, color: COLORS.amber },
            ]}
          />
        </Panel>
        <Panel title="Cache hit ratio" value={last(d.cacheHitPct)} unit="%" feature={has.cache} testId="cache" note={s.cache ? `lifetime ${pct(lifetimeHitRatio(s))} · ${s.cache.stale} stale served` : undefined}>
          <Chart title="Cache hit ratio" t={d.t} unit="%" series={[{ label: 'hit %', values: d.cacheHitPct, color: COLORS.green }]} />
        </Panel>
        <Panel title="Circuit breakers" feature={has.breakers} value={last(d.breakersOpen)} unit=" open" testId="breakers">
          <ul className="breakers">
            {Object.entries(s.breakers ?? {}).map(([dep, state]) => (
              <li key={dep}>
                <span className={`dot ${state === 'closed' ? 'ok' : state === 'open' ? 'bad' : 'warn'}`} aria-hidden="true" />
                {dep}: <strong>{state}</strong>
              </li>
            ))}
          </ul>
          <Chart title="Open circuit breakers" t={d.t} unit="" height={90} series={[{ label: 'open', values: d.breakersOpen, color: COLORS.red }]} />
        </Panel>
        <Panel title="Rate-limit rejections / s" value={last(d.rateLimitedPerSec)} unit="" feature={has.rateLimit} testId="rate-limit" note={s.rate_limit_rejections !== null ? `${s.rate_limit_rejections} in total` : undefined}>
          <Chart title="Rate-limit rejections per second" t={d.t} unit="" series={[{ label: 'rejected/s', values: d.rateLimitedPerSec, color: COLORS.violet }]} />
        </Panel>
        <Panel title="Outbox backlog" value={s.outbox_pending} unit=" events" feature={has.outbox}>
          <Chart title="Outbox backlog" t={d.t} unit="" series={[{ label: 'pending', values: d.outboxPending, color: COLORS.slate }]} />
        </Panel>
        <Panel title="Database pool" value={s.db?.pool_in_use ?? null} unit={s.db?.pool_size != null ? ` / ${s.db.pool_size} in use` : ' in use'} feature={has.pool}>
          <Chart title="Database pool use" t={d.t} unit="" series={[{ label: 'in use', values: d.poolInUse, color: COLORS.blue }, { label: 'size', values: d.poolSize, color: COLORS.slate }]} />
        </Panel>
      </div>

      <section className="status-table" aria-labelledby="by-status">
        <h2 id="by-status">Responses by status</h2>
        {s.requests_by_status && Object.keys(s.requests_by_status).length ? (
          <ul className="status-list">
            {Object.entries(s.requests_by_status)
              .sort(([a], [b]) => a.localeCompare(b))
              .map(([code, n]) => (
                <li key={code} className={`status-${code[0]}xx`}>
                  <span className="mono">{code}</span> {n.toLocaleString()}
                </li>
              ))}
          </ul>
        ) : (
          <p className="muted small">Not available.</p>
        )}
      </section>
    </section>
  )
}

const ON: Feature = { state: 'on' }
const UNREPORTED: Feature = { state: 'unreported' }

function Panel({
  title,
  value,
  unit,
  valueLabel,
  feature = ON,
  note,
  testId,
  children,
}: {
  title: string
  value: number | null | undefined
  unit: string
  valueLabel?: string
  feature?: Feature
  note?: string | undefined
  testId?: string
  children: ReactNode
}) {
  const on = feature.state === 'on'
  return (
    <article className={`panel${on ? '' : ' unavailable'}`} data-testid="panel" data-panel={testId} data-available={on} data-state={feature.state}>
      <header>
        <h2>{title}</h2>
        <span className="panel-value">
          {on ? (value === null || value === undefined ? '–' : `${valueLabel ? `${valueLabel} ` : ''}${fmt(value)}${unit}`) : null}
        </span>
      </header>
      {on ? (
        <>
          {children}
          {note ? <p className="muted small">{note}</p> : null}
        </>
      ) : feature.state === 'off' ? (
        <p className="not-available" data-testid="not-configured">
          {feature.reason}
        </p>
      ) : (
        <p className="not-available" data-testid="not-available">
          Not reported by this server.
        </p>
      )}
    </article>
  )
}

/** "3 server errors in 1,200 requests over the last 2m 58s · 40 client errors (4xx, 3.3%)" */
export function windowNote(w: { seconds: number; requests: number; serverErrors: number; clientErrors: number | null; clientPct: number | null }): string {
  const head = `${countOf(w.serverErrors, 'server error')} in ${countOf(w.requests, 'request')} over the last ${formatDuration(w.seconds)}`
  if (w.clientErrors === null) return head
  return `${head} · ${countOf(w.clientErrors, 'client error')} (4xx, ${w.clientPct === null ? '–' : `${fmt(w.clientPct)}%`})`
}

function countOf(n: number, noun: string): string {
  return `${n.toLocaleString()} ${noun}${n === 1 ? '' : 's'}`
}

const last = (xs: (number | null)[]): number | null => (xs.length ? (xs[xs.length - 1] ?? null) : null)
const pct = (r: number | null): string => (r === null ? '–' : `${(100 * r).toFixed(1)}%`)

export function formatDuration(s: number): string {
  if (s < 60) return `${Math.floor(s)}s`
  if (s < 3600) return `${Math.floor(s / 60)}m ${Math.floor(s % 60)}s`
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`
}
