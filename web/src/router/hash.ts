// Hash routing for wouter: `#/tables/orders?status=eq.paid` → path `/tables/orders`, search
// `status=eq.paid`. The server only has to serve index.html and the assets.

import { useSyncExternalStore } from 'react'

function subscribe(cb: () => void): () => void {
  addEventListener('hashchange', cb)
  return () => removeEventListener('hashchange', cb)
}

const raw = (): string => location.hash.replace(/^#\/?/, '')
const currentPath = (): string => `/${raw().split('?')[0] ?? ''}`
const currentSearch = (): string => {
  const r = raw()
  const i = r.indexOf('?')
  return i < 0 ? '' : r.slice(i + 1)
}

export function navigate(to: string, opts: { replace?: boolean } = {}): void {
  const url = `#${to.startsWith('/') ? to : `/${to}`}`
  if (url === location.hash) return
  if (opts.replace) history.replaceState(history.state, '', url)
  else history.pushState(null, '', url)
  dispatchEvent(new HashChangeEvent('hashchange'))
}

export function useHashLocation(): [string, (to: string, opts?: { replace?: boolean }) => void] {
  return [useSyncExternalStore(subscribe, currentPath, () => '/'), navigate]
}
useHashLocation.hrefs = (href: string): string => `#${href}`

export function useHashSearch(): string {
  return useSyncExternalStore(subscribe, currentSearch, () => '')
}

export function tableHref(table: string, search = ''): string {
  return `#/tables/${encodeURIComponent(table)}${search ? `?${search}` : ''}`
}
