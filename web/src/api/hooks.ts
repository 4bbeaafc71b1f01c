// React bindings: the API client for the current principal, the schema, table pages.

import { keepPreviousData, useQuery } from '@tanstack/react-query'
import { useMemo } from 'react'
import { ApiClient, EtagCache, authIdentity, defaultBaseUrl } from './client.ts'
import { parseOpenApi, type Schema } from './openapi.ts'
import { fetchPage } from './rows.ts'
import { useAuth } from '../auth/session.tsx'

/** One ETag cache for the page's lifetime; entries are keyed per principal. */
export const etagCache = new EtagCache()
const baseUrl = defaultBaseUrl()

export function useApi(): ApiClient {
  const { auth } = useAuth()
  return useMemo(() => new ApiClient(baseUrl, auth ?? { kind: 'anon' }, etagCache), [auth])
}

export function useSchema() {
  const api = useApi()
  return useQuery<Schema>({
    queryKey: ['schema', authIdentity(api.auth)],
    queryFn: async ({ signal }) => parseOpenApi((await api.request<unknown>('/', { signal })).data),
    staleTime: 60_000,
  })
}

export function rowsKey(table: string, search?: string): unknown[] {
  return search === undefined ? ['rows', table] : ['rows', table, search]
}

export function usePage(table: string, search: string, enabled = true) {
  const api = useApi()
  return useQuery({
    queryKey: [...rowsKey(table, search), authIdentity(api.auth)],
    queryFn: ({ signal }) => fetchPage(api, table, search, signal),
    placeholderData: keepPreviousData,
    enabled,
  })
}
