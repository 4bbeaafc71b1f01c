import { describe, expect, it } from 'vitest'
import { ApiClient, EtagCache, authHeaders, parseContentRange, type Fetch } from './client.ts'
import { ApiError, errorFromBody } from './errors.ts'

interface Call {
  url: string
  init: RequestInit
}

function fakeFetch(responses: Response[]): { fetch: Fetch; calls: Call[] } {
  const calls: Call[] = []
  return {
    calls,
    fetch: async (url, init) => {
      calls.push({ url, init })
      const r = responses.shift()
      if (!r) throw new TypeError('Failed to fetch')
      return r
    },
  }
}

const json = (body: unknown, status = 200, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json', ...headers } })

describe('ApiClient', () => {
  it('sends auth headers and Prefer', async () => {
    const f = fakeFetch([json([])])
    const api = new ApiClient('http://h/', { kind: 'jwt', token: 't0k' }, undefined, f.fetch)
    await api.request('/orders', { query: 'limit=1', prefer: ['count=exact'] })
    expect(f.calls[0]?.url).toBe('http://h/orders?limit=1')
    const h = f.calls[0]?.init.headers as Record<string, string>
    expect(h.Authorization).toBe('Bearer t0k')
    expect(h.Prefer).toBe('count=exact')
    expect(authHeaders({ kind: 'apikey', key: 'k' })).toEqual({ apikey: 'k' })
    expect(authHeaders({ kind: 'anon' })).toEqual({})
  })

  it('revalidates with If-None-Match and reuses the body on 304', async () => {
    const f = fakeFetch([
      json([{ id: 1 }], 200, { ETag: '"v1"', 'Content-Range': '0-0/1' }),
      new Response(null, { status: 304, headers: { ETag: '"v1"' } }),
      json([{ id: 2 }], 200, { ETag: '"v2"' }),
    ])
    const api = new ApiClient('http://h', null, undefined, f.fetch)
    const first = await api.request<unknown[]>('/t')
    expect(first.notModified).toBe(false)
    const second = await api.request<unknown[]>('/t')
    expect((f.calls[1]?.init.headers as Record<string, string>)['If-None-Match']).toBe('"v1"')
    expect(second).toMatchObject({ notModified: true, data: [{ id: 1 }] })
    expect(second.headers.get('Content-Range')).toBe('0-0/1')
    const third = await api.request<unknown[]>('/t')
    expect(third.data).toEqual([{ id: 2 }])
  })

  it('works without ETags', async () => {
    const f = fakeFetch([json([1]), json([2])])
    const api = new ApiClient('http://h', null, undefined, f.fetch)
    await api.request('/t')
    await api.request('/t')
    expect((f.calls[1]?.init.headers as Record<string, string>)['If-None-Match']).toBeUndefined()
  })

  it('keeps ETag entries apart per principal', async () => {
    const cache = new EtagCache()
    const f = fakeFetch([json([1], 200, { ETag: '"a"' }), json([2], 200, { ETag: '"b"' })])
    await new ApiClient('http://h', { kind: 'apikey', key: 'one' }, cache, f.fetch).request('/t')
    await new ApiClient('http://h', { kind: 'apikey', key: 'two' }, cache, f.fetch).request('/t')
    expect((f.calls[1]?.init.headers as Record<string, string>)['If-None-Match']).toBeUndefined()
  })

  it('raises PostgREST errors with code, details and hint', async () => {
    const f = fakeFetch([json({ code: 'PGRST204', message: 'bad column', details: 'x: nope', hint: 'check' }, 400)])
    const api = new ApiClient('http://h', null, undefined, f.fetch)
    const err = await api.request('/t').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ApiError)
    expect(err).toMatchObject({ status: 400, code: 'PGRST204', message: 'bad column', details: 'x: nope', hint: 'check' })
  })

  it('turns a network failure into an ApiError', async () => {
    const api = new ApiClient('http://h', null, undefined, fakeFetch([]).fetch)
    await expect(api.request('/t')).rejects.toMatchObject({ status: 0, code: 'NETWORK' })
  })

  it('evicts the least recently used ETag entry', () => {
    const c = new EtagCache(2)
    const e = { etag: 'x', data: null, headers: new Headers() }
    c.set('a', e)
    c.set('b', e)
    c.get('a')
    c.set('c', e)
    expect([c.get('a'), c.get('b'), c.size]).toEqual([e, undefined, 2])
  })
})

describe('errors and ranges', () => {
  it('parses non-JSON error bodies', () => {
    expect(errorFromBody(502, 'Bad Gateway', '<html>')).toMatchObject({ status: 502, message: '<html>', code: null })
    expect(errorFromBody(500, 'Internal', '')).toMatchObject({ message: 'HTTP 500 Internal' })
  })
  it('parses Content-Range', () => {
    expect(parseContentRange('50-74/1234')).toEqual({ from: 50, to: 74, total: 1234 })
    expect(parseContentRange('*/0')).toEqual({ from: null, to: null, total: 0 })
    expect(parseContentRange('0-24/*')).toEqual({ from: 0, to: 24, total: null })
    expect(parseContentRange(null)).toBeNull()
    expect(parseContentRange('junk')).toBeNull()
  })
})
