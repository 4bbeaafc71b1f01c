import { useState } from 'react'
import { useApi } from '../api/hooks.ts'

/** The exact request, copyable. */
export function QueryPreview({ table, search, label = 'GET' }: { table: string; search: string; label?: string }) {
  const api = useApi()
  const [copied, setCopied] = useState(false)
  const path = `/${table}${search ? `?${search}` : ''}`
  const display = decodeForDisplay(path)
  async function copy() {
    try {
      await navigator.clipboard.writeText(api.url(`/${table}`, search))
      setCopied(true)
      setTimeout(() => setCopied(false), 1500)
    } catch {
      /* clipboard not allowed: the text is selectable anyway */
    }
  }
  return (
    <div className="query-preview">
      <span className="method">{label}</span>
      <code data-testid="query-preview" title={display}>
        {display}
      </code>
      <button type="button" className="btn small ghost" onClick={copy} aria-label="Copy request URL">
        {copied ? 'Copied' : 'Copy'}
      </button>
    </div>
  )
}

/** Readable form of a query: percent-escapes decoded where that stays unambiguous. */
export function decodeForDisplay(s: string): string {
  return s.replace(/%(20|22|2F|40|7B|7D|5B|5D|27)/gi, (m) => decodeURIComponent(m))
}
