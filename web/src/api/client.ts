// HTTP to Headwater: auth headers, conditional GETs with an ETag cache, error parsing.

import { ApiError, errorFromBody } from './errors.ts'

export type Auth =
  | { kind: 'anon' }
  | { kind: 'apikey'; key: string }
  | { kind: 'jwt'; token: string }

export function authHeaders(auth: Auth | null): Record<string, string> {
  if (!auth) return {}
  if (auth.kind === 'apikey') return { apikey: auth.key }
  if (auth.kind === 'jwt') return { Authorization: `Bearer ${auth.token}` }
  return {}
}

/** A short identity for cache keys (never the secret itself). */
export function authIdentity(auth: Auth | null): string {
  if (!auth || auth.kind === 'anon') return 'anon'
  const secret = auth.kind === 'apikey' ? auth.key : auth.token
  let h = 0x811c9dc5
  for (let i = 0; i < secret.length; i++) h = Math.imul(h ^ secret.charCodeAt(i), 0x01000193) >>> 0
  return `${auth.kind}:${h.toString(16)}`
}

export interface ApiResponse<T> {
  data: T
  status: number
  headers: Headers
  /** True when the server answered 304 and the cached body was reused. */
  notModified: boolean
}

interface CacheEntry {
  etag: string
  data: unknown
  headers: Headers
}

/** Bounded LRU of the last response body per URL+principal, for If-None-Match. */
export class EtagCache {
  private readonly entries = new Map<string, CacheEntry>()
  constructor(private readonly max = 200) {}

  get(key: string): CacheEntry | undefined {
    const e = this.entries.get(key)
    if (e) {
      this.entries.delete(key)
      this.entries.set(key, e)
    }
    return e
  }

  set(key: string, entry: CacheEntry): void {
    this.entries.delete(key)
    this.entries.set(key, entry)
    while (this.entries.size > this.max) {
      const oldest = this.entries.keys().next().value
      if (oldest === undefined) break
      this.entries.delete(oldest)
    }
  }

  clear(): void {
    this.entries.clear()
  }

  get size(): number {
    return this.entries.size
  }
}

export type Fetch = (input: string, init: RequestInit) => Promise<Response>

export interface RequestOptions {
  method?: 'GET' | 'POST' | 'PATCH' | 'DELETE'
  /** Query string without the leading `?`. */
  query?: string
  body?: unknown
  prefer?: string[]
  headers?: Record<string, string>
  signal?: AbortSignal
}

export class ApiClient {
  readonly etags: EtagCache

  constructor(
    readonly baseUrl: string,
    readonly auth: Auth | null,
    etags?: EtagCache,
    private readonly fetchImpl: Fetch = (input, init) => fetch(input, init),
  ) {
    this.etags = etags ?? new EtagCache()
  }

  url(path: string, query?: string): string {
    const base = this.baseUrl.replace(/\/+$/, '')
    return `${base}${path}${query ? `?${query}` : ''}`
  }

  async request<T>(path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const method = opts.method ?? 'GET'
    const url = this.url(path, opts.query)
    const headers: Record<string, string> = { Accept: 'application/json', ...authHeaders(this.auth), ...opts.headers }
    if (opts.prefer && opts.prefer.length > 0) headers.Prefer = opts.prefer.join(', ')
    if (opts.body !== undefined) headers['Content-Type'] = 'application/json'

    const cacheKey = `${authIdentity(this.auth)} ${headers.Prefer ?? ''} ${url}`
    const cached = method === 'GET' ? this.etags.get(cacheKey) : undefined
    if (cached) headers['If-None-Match'] = cached.etag

    let res: Response
    try {
      res = await this.fetchImpl(url, {
        method,
        headers,
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
        signal: opts.signal,
        // We revalidate ourselves with If-None-Match; keep the browser's HTTP cache out of it.
        cache: 'no-store',
      })
    } catch (err) {
      if (err instanceof DOMException && err.name === 'AbortError') throw err
      throw new ApiError(0, `Cannot reach the server (${err instanceof Error ? err.message : String(err)})`, 'NETWORK')
    }

    if (res.status === 304 && cached) {
      return { data: cached.data as T, status: 304, headers: cached.headers, notModified: true }
    }
    const text = await res.text()
    if (!res.ok) throw errorFromBody(res.status, res.statusText, text)

    let data: unknown = null
    if (text !== '') {
      try {
        data = JSON.parse(text)
      } catch {
        throw new ApiError(res.status, 'The server sent a response that is not JSON', 'BAD_RESPONSE')
      }
    }
    const etag = res.headers.get('ETag')
    if (method === 'GET' && etag) this.etags.set(cacheKey, { etag, data, headers: res.headers })
    return { data: data as T, status: res.status, headers: res.headers, notModified: false }
  }
}

export interface ContentRange {
  from: number | null
  to: number | null
  total: number | null
}

/** `0-24/1234`, `*\/0`, `0-24/*` → numbers (null where unknown). */
export function parseContentRange(header: string | null): ContentRange | null {
  if (!header) return null
  const m = /^\s*(?:(\d+)-(\d+)|\*)\s*\/\s*(\d+|\*)\s*$/.exec(header)
  if (!m) return null
  return {
    from: m[1] !== undefined ? Number(m[1]) : null,
    to: m[2] !== undefined ? Number(m[2]) : null,
    total: m[3] !== undefined && m[3] !== '*' ? Number(m[3]) : null,
  }
}

export function defaultBaseUrl(): string {
  const fromEnv = import.meta.env.VITE_API_URL as string | undefined
  if (fromEnv) return fromEnv
  return typeof location !== 'undefined' ? location.origin : 'http://127.0.0.1:3000'
}
