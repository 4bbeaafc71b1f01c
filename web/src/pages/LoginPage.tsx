import { useEffect, useId, useState, type FormEvent } from 'react'
import { useQuery } from '@tanstack/react-query'
import { ApiClient, defaultBaseUrl, type Auth } from '../api/client.ts'
import { ApiError, describeError } from '../api/errors.ts'
import { decodeJwt, useAuth } from '../auth/session.tsx'
import { navigate } from '../router/hash.ts'

type Method = 'apikey' | 'jwt'

/** Whether the server answers without credentials (an anonymous role exists). */
function useAnonymousProbe() {
  return useQuery({
    queryKey: ['anon-probe'],
    queryFn: async () => {
      try {
        await new ApiClient(defaultBaseUrl(), { kind: 'anon' }).request('/')
        return true
      } catch (err) {
        if (err instanceof ApiError && (err.status === 401 || err.status === 403)) return false
        throw err
      }
    },
    retry: false,
  })
}

export function LoginPage({ reason }: { reason?: string }) {
  const { auth, signIn } = useAuth()
  const [method, setMethod] = useState<Method>(auth?.kind === 'jwt' ? 'jwt' : 'apikey')
  const [secret, setSecret] = useState('')
  const [error, setError] = useState<string | null>(null)
  const [busy, setBusy] = useState(false)
  const anon = useAnonymousProbe()
  const id = useId()
  const jwt = method === 'jwt' && secret ? decodeJwt(secret) : null

  useEffect(() => {
    document.title = 'Sign in · Headwater'
  }, [])

  async function submit(e: FormEvent) {
    e.preventDefault()
    const value = secret.trim()
    if (!value) {
      setError(method === 'jwt' ? 'Paste a JWT.' : 'Enter an API key.')
      return
    }
    if (method === 'jwt' && !decodeJwt(value)) {
      setError('That does not look like a JWT (three base64url parts separated by dots).')
      return
    }
    const next: Auth = method === 'jwt' ? { kind: 'jwt', token: value } : { kind: 'apikey', key: value }
    setBusy(true)
    setError(null)
    try {
      await new ApiClient(defaultBaseUrl(), next).request('/')
      signIn(next)
      navigate('/')
    } catch (err) {
      setError(err instanceof ApiError && (err.status === 401 || err.status === 403) ? `Rejected by the server: ${err.message}` : describeError(err))
    } finally {
      setBusy(false)
    }
  }

  return (
    <section className="login" aria-labelledby={`${id}-title`}>
      <form className="login-card" onSubmit={submit}>
        <h1 id={`${id}-title`}>Sign in to Headwater</h1>
        {reason ? (
          <div className="banner error" role="alert">
            {reason}
          </div>
        ) : null}
        <div className="segmented" role="radiogroup" aria-label="Credential type">
          {(['apikey', 'jwt'] as const).map((m) => (
            <label key={m} className={method === m ? 'on' : ''}>
              <input type="radio" name="method" value={m} checked={method === m} onChange={() => setMethod(m)} />
              {m === 'apikey' ? 'API key' : 'JWT'}
            </label>
          ))}
        </div>
        <label htmlFor={`${id}-secret`}>{method === 'apikey' ? 'API key' : 'JSON Web Token'}</label>
        {method === 'jwt' ? (
          <textarea id={`${id}-secret`} className="mono" rows={4} value={secret} onChange={(e) => setSecret(e.target.value)} spellCheck={false} autoComplete="off" />
        ) : (
          <input id={`${id}-secret`} className="mono" type="password" value={secret} onChange={(e) => setSecret(e.target.value)} autoComplete="off" />
        )}
        {jwt ? (
          <p className="muted small">
            Role <strong>{jwt.role ?? '(none)'}</strong>
            {jwt.sub ? ` · subject ${jwt.sub}` : ''}
            {jwt.exp ? ` · expires ${jwt.exp.toLocaleString()}` : ''}
          </p>
        ) : null}
        {error ? (
          <p className="field-error" role="alert">
            {error}
          </p>
        ) : null}
        <p className="muted small">Kept for this browser tab only (session storage); closing the tab forgets it.</p>
        <button type="submit" className="btn primary wide" disabled={busy}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        <div className="divider">or</div>
        <button
          type="button"
          className="btn wide"
          disabled={anon.data !== true}
          onClick={() => {
            signIn({ kind: 'anon' })
            navigate('/')
          }}
        >
          Continue as anonymous
        </button>
        <p className="muted small" aria-live="polite">
          {anon.isPending
            ? 'Checking whether anonymous access is allowed…'
            : anon.isError
              ? `Cannot reach the server: ${describeError(anon.error)}`
              : anon.data
                ? 'This server has an anonymous role.'
                : 'This server has no anonymous role: sign in with a key or token.'}
        </p>
      </form>
    </section>
  )
}
