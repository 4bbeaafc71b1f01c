// Who the console speaks as. Secrets live in sessionStorage only: gone when the tab closes.

import { createContext, useCallback, useContext, useMemo, useState, type ReactNode } from 'react'
import type { Auth } from '../api/client.ts'

const KEY = 'headwater.console.auth'

export function loadAuth(storage: Pick<Storage, 'getItem'> = sessionStorage): Auth | null {
  try {
    const v = JSON.parse(storage.getItem(KEY) ?? 'null') as Auth | null
    if (v && (v.kind === 'anon' || (v.kind === 'apikey' && v.key) || (v.kind === 'jwt' && v.token))) return v
  } catch {
    /* ignore a corrupt entry */
  }
  return null
}

export function saveAuth(auth: Auth | null, storage: Pick<Storage, 'setItem' | 'removeItem'> = sessionStorage): void {
  if (auth) storage.setItem(KEY, JSON.stringify(auth))
  else storage.removeItem(KEY)
}

export interface JwtInfo {
  role: string | null
  sub: string | null
  exp: Date | null
}

/** Reads (does not verify) a JWT's claims, to show who the person is signing in as. */
export function decodeJwt(token: string): JwtInfo | null {
  const parts = token.trim().split('.')
  if (parts.length !== 3 || !parts[1]) return null
  try {
    const b64 = parts[1].replace(/-/g, '+').replace(/_/g, '/')
    const json = atob(b64.padEnd(b64.length + ((4 - (b64.length % 4)) % 4), '='))
    const claims = JSON.parse(json) as Record<string, unknown>
    return {
      role: typeof claims.role === 'string' ? claims.role : null,
      sub: typeof claims.sub === 'string' ? claims.sub : null,
      exp: typeof claims.exp === 'number' ? new Date(claims.exp * 1000) : null,
    }
  } catch {
    return null
  }
}

interface AuthContextValue {
  /** The stored choice; null means "not chosen yet" (the console tries anonymous). */
  auth: Auth | null
  signIn: (auth: Auth) => void
  signOut: () => void
}

const AuthContext = createContext<AuthContextValue | null>(null)

export function AuthProvider({ children, onChange }: { children: ReactNode; onChange?: () => void }) {
  const [auth, setAuth] = useState<Auth | null>(() => loadAuth())
  const signIn = useCallback(
    (a: Auth) => {
      saveAuth(a)
      setAuth(a)
      onChange?.()
    },
    [onChange],
  )
  const signOut = useCallback(() => {
    saveAuth(null)
    setAuth(null)
    onChange?.()
  }, [onChange])
  const value = useMemo(() => ({ auth, signIn, signOut }), [auth, signIn, signOut])
  return <AuthContext.Provider value={value}>{children}</AuthContext.Provider>
}

export function useAuth(): AuthContextValue {
  const ctx = useContext(AuthContext)
  if (!ctx) throw new Error('useAuth outside AuthProvider')
  return ctx
}
