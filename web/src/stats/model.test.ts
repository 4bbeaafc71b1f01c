import { describe, expect, it } from 'vitest'
import { appendSample, derive, errorCounts, errorWindow, features, isStats, lifetimeHitRatio, type Sample, type Stats } from './model.ts'

function stats(p: Partial<Stats>): Stats {
  return {
    uptime_s: 0, requests_total: 0, errors_total: 0, requests_by_status: {}, latency_ms: { p50: null, p99: null },
    db: { pool_size: null, pool_in_use: null }, cache: null, breakers: null, rate_limit_rejections: null, outbox_pending: null, ...p,
  }
}
const sample = (t: number, p: Partial<Stats>): Sample => ({ t, stats: stats(p) })

describe('stats history', () => {
  it('derives rates from successive totals', () => {
    const h = [
      sample(100, { uptime_s: 10, requests_total: 100, errors_total: 5, cache: { hits: 10, misses: 10, stale: 0 }, rate_limit_rejections: 0 }),
      sample(102, { uptime_s: 12, requests_total: 140, errors_total: 9, cache: { hits: 40, misses: 20, stale: 0 }, rate_limit_rejections: 6, latency_ms: { p50: 1.5, p99: 9 }, db: { pool_size: 10, pool_in_use: 3 }, breakers: { db: 'closed', redis: 'open' }, outbox_pending: 4 }),
    ]
    const d = derive(h)
    expect(d.t).toEqual([102])
    expect(d.requestsPerSec).toEqual([20])
    expect(d.errorRatePct).toEqual([10])
    expect(d.cacheHitPct).toEqual([75])
    expect(d.rateLimitedPerSec).toEqual([3])
    expect(d.p50).toEqual([1.5])
    expect(d.p99).toEqual([9])
    expect(d.poolInUse).toEqual([3])
    expect(d.poolSize).toEqual([10])
    expect(d.breakersOpen).toEqual([1])
    expect(d.outboxPending).toEqual([4])
  })

  it('reports what the server does not have as null, not zero', () => {
    const d = derive([sample(1, { uptime_s: 1 }), sample(3, { uptime_s: 3, requests_total: 0 })])
    expect(d.cacheHitPct).toEqual([null])
    expect(d.rateLimitedPerSec).toEqual([null])
    expect(d.outboxPending).toEqual([null])
    expect(d.breakersOpen).toEqual([null])
    expect(d.poolInUse).toEqual([null])
    expect(d.errorRatePct).toEqual([0])
  })

  it('restarts the history when the server restarts, and bounds it', () => {
    let h: Sample[] = []
    for (let i = 1; i <= 5; i++) h = appendSample(h, sample(i, { uptime_s: i, requests_total: i }), 3)
    expect(h.map((s) => s.t)).toEqual([3, 4, 5])
    h = appendSample(h, sample(6, { uptime_s: 0.5 }), 3)
    expect(h.map((s) => s.t)).toEqual([6])
    expect(appendSample(h, sample(7, { uptime_s: 0.5 }))).toBe(h)
  })

  it('reads the cache counters as Headwater names them (hit, miss)', () => {
    const h = [sample(1, { uptime_s: 1, cache: { hit: 1, miss: 1, stale: 0 } }), sample(3, { uptime_s: 3, cache: { hit: 4, miss: 2, stale: 0 } })]
    expect(derive(h).cacheHitPct).toEqual([75])
    expect(lifetimeHitRatio(h[1]!.stats)).toBe(4 / 6)
  })

  it('computes the lifetime hit ratio and validates payloads', () => {
    expect(lifetimeHitRatio(stats({ cache: { hits: 3, misses: 1, stale: 0 } }))).toBe(0.75)
    expect(lifetimeHitRatio(stats({}))).toBeNull()
    expect(isStats({ uptime_s: 1, requests_total: 2 })).toBe(true)
    expect(isStats({ detail: 'Not Found' })).toBe(false)
  })
})

describe('errors: 5xx are errors, 4xx are counted apart, over the same window', () => {
  it('takes the server’s split when it reports client errors', () => {
    expect(errorCounts(stats({ errors_total: 2, client_errors_total: 9 }))).toEqual({ server: 2, client: 9 })
  })

  it('splits an older server’s statuses itself (its errors_total counted every status ≥ 400)', () => {
    const old = stats({ errors_total: 12, requests_by_status: { '200': 88, '404': 10, '500': 1, '503': 1 } })
    expect(errorCounts(old)).toEqual({ server: 2, client: 10 })
  })

  it('gives the error rate with the counts it is computed from', () => {
    const h = [
      sample(100, { uptime_s: 10, requests_total: 100, errors_total: 1, client_errors_total: 10 }),
      sample(102, { uptime_s: 12, requests_total: 150, errors_total: 1, client_errors_total: 30 }),
      sample(104, { uptime_s: 14, requests_total: 300, errors_total: 4, client_errors_total: 30 }),
    ]
    const d = derive(h)
    expect(d.errorRatePct).toEqual([0, 2])
    expect(d.clientErrorRatePct).toEqual([40, 0])
    const w = errorWindow(h)!
    expect(w).toEqual({ seconds: 4, requests: 200, serverErrors: 3, clientErrors: 20, serverPct: 1.5, clientPct: 10 })
    // The rate is exactly the count over the requests of the same window.
    expect(w.serverPct).toBe((100 * w.serverErrors) / w.requests)
    expect(errorWindow(h.slice(0, 1))).toBeNull()
  })
})

describe('features as the server reports them', () => {
  it('says "not configured" for a reported null, and "not reported" only for a missing field', () => {
    // `headwater serve --demo` (SQLite): no breakers, no rate limit, no events.
    const demo = stats({ cache: { hits: 0, misses: 0, stale: 0 }, breakers: {}, rate_limit_rejections: null, outbox_pending: null, db: { pool_size: 20, pool_in_use: 0 } })
    const f = features(demo)
    expect(f.cache).toEqual({ state: 'on' })
    expect(f.pool).toEqual({ state: 'on' })
    expect(f.rateLimit).toEqual({ state: 'off', reason: 'No rate limit configured.' })
    expect(f.breakers).toMatchObject({ state: 'off', reason: expect.stringContaining('No circuit breakers') })
    expect(f.outbox).toMatchObject({ state: 'off' })
    // PostgreSQL with a rate limit: the database breaker and the rejections are shown.
    const pg = features(stats({ breakers: { database: 'closed' }, rate_limit_rejections: 0, outbox_pending: 3 }))
    expect([pg.breakers.state, pg.rateLimit.state, pg.outbox.state]).toEqual(['on', 'on', 'on'])
    const old = features({ uptime_s: 1, requests_total: 0, errors_total: 0 } as Stats)
    expect(old.rateLimit).toEqual({ state: 'unreported' })
  })
})

