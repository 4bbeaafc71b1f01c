import { describe, expect, it } from 'vitest'
import { appendSample, derive, isStats, lifetimeHitRatio, type Sample, type Stats } from './model.ts'

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

  it('computes the lifetime hit ratio and validates payloads', () => {
    expect(lifetimeHitRatio(stats({ cache: { hits: 3, misses: 1, stale: 0 } }))).toBe(0.75)
    expect(lifetimeHitRatio(stats({}))).toBeNull()
    expect(isStats({ uptime_s: 1, requests_total: 2 })).toBe(true)
    expect(isStats({ detail: 'Not Found' })).toBe(false)
  })
})
