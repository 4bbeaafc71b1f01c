// @vitest-environment jsdom
// The operations page on what real servers answer at /-/stats: features a server does not use
// say so (never "not available yet"), and the error rate comes with the counts it is made of.

import { afterEach, describe, expect, it, vi } from 'vitest'
import { cleanup, render, screen, waitFor } from '@testing-library/react'
import { QueryClient, QueryClientProvider } from '@tanstack/react-query'
import { AuthProvider } from '../auth/session.tsx'
import { OpsPage } from './OpsPage.tsx'

// uPlot needs a real canvas; the charts are checked in the browser (e2e).
vi.mock('../components/Chart.tsx', () => ({
  Chart: ({ title }: { title: string }) => <div data-testid="chart">{title}</div>,
}))

afterEach(() => {
  cleanup()
  vi.unstubAllGlobals()
})

/** What `headwater serve --demo` (SQLite) answers: cache on, no breakers, no rate limit, no events. */
const sqliteDemo = {
  uptime_s: 10, requests_total: 100, errors_total: 1, client_errors_total: 10,
  requests_by_status: { '200': 89, '404': 10, '500': 1 }, latency_ms: { p50: 1, p99: 5 },
  db: { pool_size: 20, pool_in_use: 0, queries_total: 50 }, cache: { hit: 0, miss: 0, stale: 0 },
  breakers: {}, rate_limit_rejections: null, outbox_pending: null,
}

function serve(snapshots: unknown[]) {
  let i = 0
  vi.stubGlobal('fetch', async () => {
    const body = snapshots[Math.min(i++, snapshots.length - 1)]
    return new Response(JSON.stringify(body), { status: 200, headers: { 'Content-Type': 'application/json' } })
  })
  const qc = new QueryClient({ defaultOptions: { queries: { retry: false } } })
  render(
    <QueryClientProvider client={qc}>
      <AuthProvider>
        <OpsPage />
      </AuthProvider>
    </QueryClientProvider>,
  )
  return qc
}

const panel = (name: string) => document.querySelector(`[data-panel=${name}]`) as HTMLElement

describe('OpsPage', () => {
  it('says what a SQLite demo server does not use, instead of "not available yet"', async () => {
    serve([sqliteDemo])
    await screen.findByText('Operations')
    expect(panel('rate-limit').textContent).toContain('No rate limit configured.')
    expect(panel('breakers').textContent).toContain('No circuit breakers')
    expect(document.body.textContent).not.toMatch(/not available|not reported/i)
    expect(screen.getByTestId('lifetime').textContent).toContain('100 requests, 1 server error (5xx, 1.0%), 10 client errors (4xx)')
  })

  it('shows the breakers and the rate limit a server has', async () => {
    serve([{ ...sqliteDemo, breakers: { database: 'closed', redis: 'open' }, rate_limit_rejections: 7 }])
    await screen.findByText('Operations')
    expect(panel('breakers').dataset.state).toBe('on')
    expect(panel('breakers').textContent).toContain('database: closed')
    expect(panel('breakers').textContent).toContain('redis: open')
    expect(panel('rate-limit').textContent).toContain('7 in total')
  })

  it('gives the error rate and the error count over the same requests', async () => {
    const qc = serve([sqliteDemo, { ...sqliteDemo, uptime_s: 12, requests_total: 300, errors_total: 4, client_errors_total: 30 }])
    await screen.findByText('Operations')
    await qc.refetchQueries({ queryKey: ['stats'] })
    await waitFor(() => expect(panel('error-rate').querySelector('.panel-value')!.textContent).toBe('1.5%'))
    expect(panel('error-rate').textContent).toContain('3 server errors in 200 requests over the last 2s · 20 client errors (4xx, 10.0%)')
  })
})
