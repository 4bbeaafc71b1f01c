// The table view's state ↔ the PostgREST query string (the same string is the API request's
// query and the console URL's query, so a view is shareable and reloadable).

import {
  type Combinator,
  type Condition,
  type FilterNode,
  type Group,
  condition,
  emptyRoot,
  group,
  isComplete,
  isOperator,
} from './model.ts'
import { formatList, listToText, parseList, quoteIfNeeded, splitTopLevel, unquote } from './grammar.ts'

export type Direction = 'asc' | 'desc'
export type Nulls = 'nullsfirst' | 'nullslast'

export interface OrderTerm {
  column: string
  dir: Direction
  nulls: Nulls | null
}

export interface TableQuery {
  /** Chosen columns; null means all (`select` omitted). */
  select: string[] | null
  filter: Group
  order: OrderTerm[]
  limit: number
  offset: number
  /** Parameters the builder does not model (other operators, embeds…), kept verbatim. */
  extras: [string, string][]
}

export const DEFAULT_LIMIT = 25
export const PAGE_SIZES = [10, 25, 50, 100, 250] as const

export function defaultQuery(): TableQuery {
  return { select: null, filter: emptyRoot(), order: [], limit: DEFAULT_LIMIT, offset: 0, extras: [] }
}

// ---------- serialize ----------

/** The operator-and-value part: `not.in.(1,2)`, `eq.5`, `is.null`. */
export function operand(c: Condition, inTree: boolean): string {
  const prefix = c.negate ? 'not.' : ''
  let value: string
  if (c.op === 'in') value = formatList(parseList(c.value))
  else if (c.op === 'is') value = c.value
  else value = inTree ? quoteIfNeeded(c.value) : c.value
  return `${prefix}${c.op}.${value}`
}

function treeItem(node: FilterNode): string | null {
  if (node.kind === 'condition') return isComplete(node) ? `${node.column}.${operand(node, true)}` : null
  const inner = node.items.map(treeItem).filter((s): s is string => s !== null)
  if (inner.length === 0) return null
  return `${node.negate ? 'not.' : ''}${node.combinator}(${inner.join(',')})`
}

function groupParam(g: Group): [string, string] | null {
  const inner = g.items.map(treeItem).filter((s): s is string => s !== null)
  if (inner.length === 0) return null
  return [`${g.negate ? 'not.' : ''}${g.combinator}`, `(${inner.join(',')})`]
}

/** The filter tree as query parameters, in order. */
export function filterParams(root: Group): [string, string][] {
  if (root.combinator === 'or' || root.negate) {
    const p = groupParam(root)
    return p ? [p] : []
  }
  const params: [string, string][] = []
  for (const item of root.items) {
    if (item.kind === 'condition') {
      if (isComplete(item)) params.push([item.column, operand(item, false)])
    } else {
      const p = groupParam(item)
      if (p) params.push(p)
    }
  }
  return params
}

export function orderParam(order: OrderTerm[]): string | null {
  if (order.length === 0) return null
  return order.map((o) => [o.column, o.dir, o.nulls].filter(Boolean).join('.')).join(',')
}

export function toParams(q: TableQuery, opts: { paging?: boolean } = {}): [string, string][] {
  const params: [string, string][] = []
  if (q.select && q.select.length > 0) params.push(['select', q.select.join(',')])
  params.push(...filterParams(q.filter))
  params.push(...q.extras)
  const order = orderParam(q.order)
  if (order) params.push(['order', order])
  if (opts.paging !== false) {
    params.push(['limit', String(q.limit)])
    if (q.offset > 0) params.push(['offset', String(q.offset)])
  }
  return params
}

/**
 * Percent-encodes a query component, leaving the characters PostgREST syntax uses
 * (`,.:()*`) readable; they are all legal in a query string.
 */
export function encodeComponent(s: string): string {
  return encodeURIComponent(s).replace(/%2C/gi, ',').replace(/%3A/gi, ':')
}

export function encodeParams(params: [string, string][]): string {
  return params.map(([k, v]) => `${encodeComponent(k)}=${encodeComponent(v)}`).join('&')
}

export function toSearch(q: TableQuery, opts: { paging?: boolean } = {}): string {
  return encodeParams(toParams(q, opts))
}

// ---------- parse ----------

const RESERVED_KEYS = new Set(['select', 'order', 'limit', 'offset', 'columns', 'on_conflict'])
const LOGIC_KEY = /^(not\.)?(and|or)$/

export function decodeParams(search: string): [string, string][] {
  const s = search.startsWith('?') ? search.slice(1) : search
  if (s === '') return []
  return s
    .split('&')
    .filter((part) => part !== '')
    .map((part) => {
      const eq = part.indexOf('=')
      const k = eq < 0 ? part : part.slice(0, eq)
      const v = eq < 0 ? '' : part.slice(eq + 1)
      return [safeDecode(k), safeDecode(v)] as [string, string]
    })
}

function safeDecode(s: string): string {
  try {
    return decodeURIComponent(s.replace(/\+/g, ' '))
  } catch {
    return s
  }
}

/** `[not.]op.value` → Condition, or null if the operator is not one the builder models. */
export function parseOperand(column: string, text: string, inTree: boolean): Condition | null {
  let rest = text
  let negate = false
  if (rest.startsWith('not.')) {
    negate = true
    rest = rest.slice(4)
  }
  const dot = rest.indexOf('.')
  if (dot < 0) return null
  const op = rest.slice(0, dot)
  const raw = rest.slice(dot + 1)
  if (!isOperator(op)) return null
  if (op === 'in') {
    if (!raw.startsWith('(') || !raw.endsWith(')')) return null
    return condition(column, 'in', listToText(parseList(raw.slice(1, -1))), negate)
  }
  if (op === 'is') {
    const v = raw.toLowerCase()
    if (v === 'not_null') return condition(column, 'is', 'null', !negate)
    return condition(column, 'is', v, negate)
  }
  return condition(column, op, inTree ? unquote(raw) : raw, negate)
}

/** Parses a logic tree item list `a.eq.1,or(b.gt.2,c.is.null)` into nodes. */
export function parseTreeItems(inner: string): FilterNode[] | null {
  const nodes: FilterNode[] = []
  for (const part of splitTopLevel(inner)) {
    const node = parseTreeItem(part.trim())
    if (!node) return null
    nodes.push(node)
  }
  return nodes
}

function parseTreeItem(s: string): FilterNode | null {
  const g = /^(not\.)?(and|or)\((.*)\)$/s.exec(s)
  if (g) {
    const items = parseTreeItems(g[3] ?? '')
    return items ? group(g[2] as Combinator, items, Boolean(g[1])) : null
  }
  const dot = s.indexOf('.')
  if (dot <= 0) return null
  return parseOperand(s.slice(0, dot), s.slice(dot + 1), true)
}

function parseLogicParam(key: string, value: string): Group | null {
  const m = LOGIC_KEY.exec(key)
  if (!m || !value.startsWith('(') || !value.endsWith(')')) return null
  const items = parseTreeItems(value.slice(1, -1))
  return items ? group(m[2] as Combinator, items, Boolean(m[1])) : null
}

export function parseOrder(value: string): OrderTerm[] {
  return value
    .split(',')
    .map((term) => term.trim())
    .filter(Boolean)
    .map((term) => {
      const parts = term.split('.')
      let dir: Direction = 'asc'
      let nulls: Nulls | null = null
      while (parts.length > 1) {
        const last = parts[parts.length - 1]
        if (last === 'asc' || last === 'desc') dir = last
        else if (last === 'nullsfirst' || last === 'nullslast') nulls = last
        else break
        parts.pop()
      }
      return { column: parts.join('.'), dir, nulls }
    })
}

function toInt(v: string, fallback: number): number {
  return /^\d+$/.test(v) ? Number(v) : fallback
}

export function fromSearch(search: string): TableQuery {
  const q = defaultQuery()
  const conditions: FilterNode[] = []
  for (const [key, value] of decodeParams(search)) {
    if (key === 'select') {
      q.select = value === '*' || value === '' ? null : value.split(',').map((s) => s.trim())
    } else if (key === 'order') {
      q.order = parseOrder(value)
    } else if (key === 'limit') {
      q.limit = toInt(value, DEFAULT_LIMIT)
    } else if (key === 'offset') {
      q.offset = toInt(value, 0)
    } else if (RESERVED_KEYS.has(key)) {
      q.extras.push([key, value])
    } else if (LOGIC_KEY.test(key)) {
      const g = parseLogicParam(key, value)
      if (g) conditions.push(g)
      else q.extras.push([key, value])
    } else {
      const c = parseOperand(key, value, false)
      if (c) conditions.push(c)
      else q.extras.push([key, value])
    }
  }
  // A lone `or=(…)` is the root itself (the builder's "match any" mode).
  const only = conditions[0]
  if (conditions.length === 1 && only?.kind === 'group' && (only.combinator === 'or' || only.negate)) {
    q.filter = only
  } else {
    q.filter = { ...emptyRoot('and'), items: conditions }
  }
  return q
}

// ---------- helpers used by the views ----------

/** Clicking a header: none → asc → desc → none; with `add` (shift) it keeps the other terms. */
export function toggleOrder(order: OrderTerm[], column: string, add: boolean): OrderTerm[] {
  const current = order.find((o) => o.column === column)
  const others = add ? order.filter((o) => o.column !== column) : []
  if (!current) return [...others, { column, dir: 'asc', nulls: null }]
  if (current.dir === 'asc') {
    const next: OrderTerm = { column, dir: 'desc', nulls: current.nulls }
    return add ? order.map((o) => (o.column === column ? next : o)) : [next]
  }
  return others
}

/** The filter that selects the rows whose `column` equals `value` (following a relationship). */
export function equalsQuery(column: string, value: unknown): TableQuery {
  const q = defaultQuery()
  q.filter = { ...emptyRoot('and'), items: [condition(column, value === null ? 'is' : 'eq', value === null ? 'null' : String(value))] }
  return q
}
