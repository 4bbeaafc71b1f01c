// /-/stats snapshots → chart series. Rates are derived from successive cumulative totals.

export interface Stats {
  uptime_s: number
  requests_total: number
  /** Server errors (5xx). Servers before `client_errors_total` counted every status ≥ 400. */
  errors_total: number
  /** Client errors (4xx): the caller's mistakes, counted apart from the server's. */
  client_errors_total?: number
  requests_by_status?: Record<string, number>
  latency_ms?: { p50: number | null; p99: number | null } | null
  db?: { pool_size: number | null; pool_in_use: number | null } | null
  /** Headwater reports `{hit, miss, stale}`; `hits`/`misses` are read too. */
  cache: CacheCounts | null
  breakers: Record<string, string> | null
  rate_limit_rejections: number | null
  outbox_pending: number | null
}

export interface CacheCounts {
  hit?: number
  miss?: number
  hits?: number
  misses?: number
  stale: number
}

/** Cache lookups from either spelling of the counters. */
export function cacheCounts(c: CacheCounts): { hits: number; misses: number } {
  return { hits: c.hit ?? c.hits ?? 0, misses: c.miss ?? c.misses ?? 0 }
}

export interface Sample {
  /** Client clock, seconds since epoch (chart x axis). */
  t: number
  stats: Stats
}

export const MAX_SAMPLES = 90

/** Appends a sample; a restart (uptime going backwards) starts a new history. */
export function appendSample(history: Sample[], sample: Sample, max = MAX_SAMPLES): Sample[] {
  const last = history[history.length - 1]
  if (last && sample.stats.uptime_s < last.stats.uptime_s) return [sample]
  if (last && sample.stats.uptime_s === last.stats.uptime_s && sample.stats.requests_total === last.stats.requests_total) {
    return history // the same snapshot twice (e.g. a 304 or a cached answer)
  }
  const next = [...history, sample]
  return next.length > max ? next.slice(next.length - max) : next
}

export type Series = (number | null)[]

export interface Derived {
  t: number[]
  requestsPerSec: Series
  /** Server errors (5xx) as a share of the requests in each interval. */
  errorRatePct: Series
  /** Client errors (4xx) as a share of the requests in each interval. */
  clientErrorRatePct: Series
  p50: Series
  p99: Series
  cacheHitPct: Series
  rateLimitedPerSec: Series
  outboxPending: Series
  poolInUse: Series
  poolSize: Series
  breakersOpen: Series
}

function delta(a: number | null | undefined, b: number | null | undefined): number | null {
  return typeof a === 'number' && typeof b === 'number' ? b - a : null
}

/** One point per interval between consecutive samples (so n samples → n-1 points). */
export function derive(history: Sample[]): Derived {
  const d: Derived = {
    t: [], requestsPerSec: [], errorRatePct: [], clientErrorRatePct: [], p50: [], p99: [], cacheHitPct: [],
    rateLimitedPerSec: [], outboxPending: [], poolInUse: [], poolSize: [], breakersOpen: [],
  }
  for (let i = 1; i < history.length; i++) {
    const prev = (history[i - 1] as Sample).stats
    const cur = history[i] as Sample
    const s = cur.stats
    const dt = s.uptime_s - prev.uptime_s
    const dReq = delta(prev.requests_total, s.requests_total)
    const before = errorCounts(prev)
    const now = errorCounts(s)
    const dErr = delta(before.server, now.server)
    const dClient = delta(before.client, now.client)
    d.t.push(cur.t)
    d.requestsPerSec.push(dReq !== null && dt > 0 ? dReq / dt : null)
    d.errorRatePct.push(share(dErr, dReq))
    d.clientErrorRatePct.push(share(dClient, dReq))
    d.p50.push(s.latency_ms?.p50 ?? null)
    d.p99.push(s.latency_ms?.p99 ?? null)
    if (s.cache && prev.cache) {
      const [a, b] = [cacheCounts(prev.cache), cacheCounts(s.cache)]
      const hits = b.hits - a.hits
      const lookups = hits + (b.misses - a.misses)
      d.cacheHitPct.push(lookups > 0 ? (100 * hits) / lookups : null)
    } else d.cacheHitPct.push(null)
    const dRl = delta(prev.rate_limit_rejections, s.rate_limit_rejections)
    d.rateLimitedPerSec.push(dRl !== null && dt > 0 ? dRl / dt : null)
    d.outboxPending.push(s.outbox_pending ?? null)
    d.poolInUse.push(s.db?.pool_in_use ?? null)
    d.poolSize.push(s.db?.pool_size ?? null)
    d.breakersOpen.push(s.breakers ? Object.values(s.breakers).filter((v) => v !== 'closed').length : null)
  }
  return d
}

function share(part: number | null, whole: number | null): number | null {
  if (part === null || whole === null) return null
  return whole > 0 ? (100 * part) / whole : 0
}

export interface ErrorCounts {
  /** Server errors (5xx). */
  server: number
  /** Client errors (4xx); null when the server reports neither them nor its statuses. */
  client: number | null
}

/**
 * Errors as operators count them: server errors are 5xx, a caller's 4xx are apart. A server
 * without `client_errors_total` counted every status ≥ 400 in `errors_total`, so its counts are
 * taken from `requests_by_status` instead, to keep one definition everywhere.
 */
export function errorCounts(s: Stats): ErrorCounts {
  if (typeof s.client_errors_total === 'number') return { server: s.errors_total, client: s.client_errors_total }
  const byStatus = s.requests_by_status
  if (!byStatus || Object.keys(byStatus).length === 0) return { server: s.errors_total, client: byStatus ? 0 : null }
  let server = 0
  let client = 0
  for (const [code, n] of Object.entries(byStatus)) {
    const status = Number(code)
    if (status >= 500) server += n
    else if (status >= 400) client += n
  }
  return { server, client }
}

export interface ErrorWindow {
  /** Seconds between the first and the last sample. */
  seconds: number
  requests: number
  serverErrors: number
  clientErrors: number | null
  /** Server errors as a percentage of the requests (0 when there were none). */
  serverPct: number
  clientPct: number | null
}

/**
 * Requests and errors over the whole charted window (first to last sample): the error rate
 * shown with its counts, so that the two always describe the same requests.
 */
export function errorWindow(history: Sample[]): ErrorWindow | null {
  const first = history[0]
  const last = history[history.length - 1]
  if (!first || !last || first === last) return null
  const requests = last.stats.requests_total - first.stats.requests_total
  const a = errorCounts(first.stats)
  const b = errorCounts(last.stats)
  const serverErrors = b.server - a.server
  const clientErrors = a.client !== null && b.client !== null ? b.client - a.client : null
  return {
    seconds: last.stats.uptime_s - first.stats.uptime_s,
    requests,
    serverErrors,
    clientErrors,
    serverPct: share(serverErrors, requests) ?? 0,
    clientPct: share(clientErrors, requests),
  }
}

export type Feature = { state: 'on' } | { state: 'off'; reason: string } | { state: 'unreported' }

/**
 * Whether the server has a feature, from how it reports it: a number or an object is "on", a
 * reported null (or no breakers at all) means the server does not use it here ("off", with the
 * reason to show), and a field the server leaves out means it is too old to report it.
 */
export function features(s: Stats): Record<'cache' | 'breakers' | 'rateLimit' | 'outbox' | 'pool', Feature> {
  const has = (k: string) => Object.prototype.hasOwnProperty.call(s, k)
  const pick = (key: string, on: boolean, reason: string): Feature =>
    !has(key) ? { state: 'unreported' } : on ? { state: 'on' } : { state: 'off', reason }
  return {
    cache: pick('cache', s.cache != null, 'The read cache is disabled on this server.'),
    breakers: pick(
      'breakers',
      s.breakers != null && Object.keys(s.breakers).length > 0,
      'No circuit breakers: this server has no remote dependency to guard (a SQLite file, no Redis).',
    ),
    rateLimit: pick('rate_limit_rejections', s.rate_limit_rejections != null, 'No rate limit configured.'),
    outbox: pick('outbox_pending', s.outbox_pending != null, 'No outbox count: events are not configured, or their relay has not started.'),
    pool: pick('db', s.db != null && s.db.pool_in_use !== null, 'The database reports no connection pool.'),
  }
}

/** Lifetime cache hit ratio from the latest snapshot. */
export function lifetimeHitRatio(s: Stats): number | null {
  if (!s.cache) return null
  const { hits, misses } = cacheCounts(s.cache)
  const total = hits + misses
  return total > 0 ? hits / total : null
}

export function isStats(v: unknown): v is Stats {
  if (!v || typeof v !== 'object') return false
  const o = v as Record<string, unknown>
  return typeof o.uptime_s === 'number' && typeof o.requests_total === 'number'
}
