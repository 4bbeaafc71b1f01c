// PostgREST-shaped errors: {"code","message","details","hint"}.

export class ApiError extends Error {
  readonly status: number
  readonly code: string | null
  readonly details: unknown
  readonly hint: string | null

  constructor(status: number, message: string, code: string | null = null, details: unknown = null, hint: string | null = null) {
    super(message)
    this.name = 'ApiError'
    this.status = status
    this.code = code
    this.details = details
    this.hint = hint
  }

  /** One line for banners: "PGRST204 · message". */
  get summary(): string {
    return this.code ? `${this.code} · ${this.message}` : this.message
  }
}

function str(v: unknown): string | null {
  return typeof v === 'string' && v !== '' ? v : null
}

/** Builds an ApiError from a response status and its (possibly non-JSON) body text. */
export function errorFromBody(status: number, statusText: string, bodyText: string): ApiError {
  let body: unknown = null
  try {
    body = bodyText ? JSON.parse(bodyText) : null
  } catch {
    body = null
  }
  if (body && typeof body === 'object' && !Array.isArray(body)) {
    const b = body as Record<string, unknown>
    const message = str(b.message) ?? str(b.error) ?? `${status} ${statusText}`.trim()
    return new ApiError(status, message, str(b.code), b.details ?? null, str(b.hint))
  }
  const fallback = bodyText.trim().slice(0, 200)
  return new ApiError(status, fallback || `HTTP ${status} ${statusText}`.trim())
}

export function describeError(err: unknown): string {
  if (err instanceof ApiError) return err.summary
  if (err instanceof Error) return err.message
  return String(err)
}
