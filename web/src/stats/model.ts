// /-/stats snapshots → chart series. Rates are derived from successive cumulative totals.

export interface Stats {
  uptime_s: number
  requests_total: number
  errors_total: number
  requests_by_status?: Record<string, number>
  latency_ms?: { p50: number | null; p99: number | null } | null
  db?: { pool_size: number | null; pool_in_use: number | null } | null
  cache: { hits: number; misses: number; stale: number } | null
  breakers: Record<string, string> | null
  rate_limit_rejections: number | null
  outbox_pending: number | null
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
  errorRatePct: Series
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
    t: [], requestsPerSec: [], errorRatePct: [], p50: [], p99: [], cacheHitPct: [],
    rateLimitedPerSec: [], outboxPending: [], poolInUse: [], poolSize: [], breakersOpen: [],
  }
  for (let i = 1; i < history.length; i++) {
    const prev = (history[i - 1] as Sample).stats
    const cur = history[i] as Sample
    const s = cur.stats
    const dt = s.uptime_s - prev.uptime_s
    const dReq = delta(prev.requests_total, s.requests_total)
    const dErr = delta(prev.errors_total, s.errors_total)
    d.t.push(cur.t)
    d.requestsPerSec.push(dReq !== null && dt > 0 ? dReq / dt : null)
    d.errorRatePct.push(dReq !== null && dErr !== null ? (dReq > 0 ? (100 * dErr) / dReq : 0) : null)
    d.p50.push(s.latency_ms?.p50 ?? null)
    d.p99.push(s.latency_ms?.p99 ?? null)
    if (s.cache && prev.cache) {
      const hits = s.cache.hits - prev.cache.hits
      const lookups = hits + (s.cache.misses - prev.cache.misses)
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

/** Lifetime cache hit ratio from the latest snapshot. */
export function lifetimeHitRatio(s: Stats): number | null {
  if (!s.cache) return null
  const total = s.cache.hits + s.cache.misses
  return total > 0 ? s.cache.hits / total : null
}

export function isStats(v: unknown): v is Stats {
  if (!v || typeof v !== 'object') return false
  const o = v as Record<string, unknown>
  return typeof o.uptime_s === 'number' && typeof o.requests_total === 'number'
}
