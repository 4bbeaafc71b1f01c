// PostgREST value quoting and list/logic-tree scanning.

/** Characters that force double quotes inside a logic tree or an `in` list. */
const RESERVED = /[,()"\\]/

export function needsQuotes(v: string): boolean {
  return v === '' || RESERVED.test(v) || v !== v.trim()
}

export function quote(v: string): string {
  return `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`
}

export function quoteIfNeeded(v: string): string {
  return needsQuotes(v) ? quote(v) : v
}

/**
 * Splits `s` at top-level commas, honouring double quotes (with backslash escapes) and
 * parentheses. Returns the raw parts (quotes kept).
 */
export function splitTopLevel(s: string): string[] {
  const parts: string[] = []
  let depth = 0
  let inQuotes = false
  let start = 0
  for (let i = 0; i < s.length; i++) {
    const ch = s[i]
    if (inQuotes) {
      if (ch === '\\') i++
      else if (ch === '"') inQuotes = false
      continue
    }
    if (ch === '"') inQuotes = true
    else if (ch === '(') depth++
    else if (ch === ')') depth--
    else if (ch === ',' && depth === 0) {
      parts.push(s.slice(start, i))
      start = i + 1
    }
  }
  parts.push(s.slice(start))
  return parts
}

/** Removes surrounding double quotes and backslash escapes; trims an unquoted item if asked. */
export function unquote(raw: string, trim = false): string {
  const t = raw.trim()
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) {
    return t.slice(1, -1).replace(/\\(.)/g, '$1')
  }
  return trim ? t : raw
}

/** `a, b, "c,d"` → ['a', 'b', 'c,d']. An empty or blank string is the empty list. */
export function parseList(text: string): string[] {
  if (text.trim() === '') return []
  return splitTopLevel(text).map((p) => unquote(p, true))
}

/** ['a', 'c,d'] → `(a,"c,d")`. */
export function formatList(items: string[]): string {
  return `(${items.map(quoteIfNeeded).join(',')})`
}

/** ['a', 'c,d'] → `a, "c,d"` (how the builder shows a list to edit). */
export function listToText(items: string[]): string {
  return items.map((i) => (needsQuotes(i) ? quote(i) : i)).join(', ')
}
