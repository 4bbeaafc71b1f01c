// Contract test: every query the filter builder writes is parsed by Headwater's own grammar
// (src/headwater/api/grammar.py) into exactly the conditions the builder meant.
// Needs a Python with headwater importable: $HEADWATER_PYTHON, or ../.venv/bin/python.
// Skipped when neither exists, except under CI, where that is a failure.

import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { type FilterNode, type Group, type Operator, OPERATORS, condition, emptyRoot, group } from './model.ts'
import { type TableQuery, defaultQuery, fromSearch, toSearch } from './query.ts'
import { parseList } from './grammar.ts'
import { isComplete } from './model.ts'

const script = fileURLToPath(new URL('./server-grammar.py', import.meta.url))
const venvPython = fileURLToPath(new URL('../../../.venv/bin/python', import.meta.url))
const python = process.env.HEADWATER_PYTHON ?? (existsSync(venvPython) ? venvPython : null)

function serverParse(queries: string[]): unknown[] {
  const out = execFileSync(python as string, [script], {
    input: JSON.stringify(queries),
    encoding: 'utf8',
    cwd: fileURLToPath(new URL('../../..', import.meta.url)),
  })
  return JSON.parse(out) as unknown[]
}

type Described = { c: string; op: string; v: string | string[]; n: boolean } | { l: string; n: boolean; items: Described[] }

function describeNode(node: FilterNode): Described | null {
  if (node.kind === 'condition') {
    if (!isComplete(node)) return null
    return { c: node.column, op: node.op, v: node.op === 'in' ? parseList(node.value) : node.value, n: node.negate }
  }
  const items = node.items.map(describeNode).filter((d): d is Described => d !== null)
  return items.length ? { l: node.combinator, n: node.negate, items } : null
}

/** What the builder means, in the shape server-grammar.py prints. */
function meaning(q: TableQuery) {
  const root = q.filter
  const where =
    root.combinator === 'or' || root.negate
      ? [describeNode(root)].filter(Boolean)
      : root.items.map(describeNode).filter(Boolean)
  return {
    select: q.select ? q.select.join(',') : '*',
    where,
    order: q.order.map((o) => ({ c: o.column, desc: o.dir === 'desc', nulls: o.nulls === null ? null : o.nulls.slice(5) })),
    limit: q.limit,
    offset: q.offset > 0 ? q.offset : null,
  }
}

// Values chosen to hit every quoting and encoding rule.
const VALUES = [
  'plain', 'a,b', '(x)', 'f(x,y)', 'say "hi"', 'back\\slash', ' lead', 'trail ', 'ünïcødé', '100%',
  'a&b=c', '*wild*', '1.5', 'x.y:z', '#hash', '+plus', 'it\'s', 'not.eq.1', 'or(a.eq.1)', '"', ')',
]
const COLUMNS = ['id', 'name', 'status', 'total_amount']

function rng(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0
    return s / 2 ** 32
  }
}

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)] as T
}

function randomCondition(r: () => number) {
  const op: Operator = pick(r, OPERATORS)
  const column = pick(r, COLUMNS)
  if (op === 'is') return condition(column, op, pick(r, ['null', 'true', 'false', 'unknown']), r() < 0.3)
  if (op === 'in') {
    const items = Array.from({ length: Math.floor(r() * 4) }, () => pick(r, VALUES))
    return condition(column, op, items.map((v) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(', '), r() < 0.3)
  }
  return condition(column, op, pick(r, VALUES), r() < 0.3)
}

function randomTree(r: () => number, depth: number): Group {
  const items: FilterNode[] = []
  const n = 1 + Math.floor(r() * 3)
  for (let i = 0; i < n; i++) items.push(depth > 0 && r() < 0.3 ? randomTree(r, depth - 1) : randomCondition(r))
  return group(r() < 0.5 ? 'and' : 'or', items, r() < 0.2)
}

function cases(): TableQuery[] {
  const out: TableQuery[] = []
  const r = rng(42)
  for (let i = 0; i < 150; i++) {
    const q = defaultQuery()
    const tree = randomTree(r, 2)
    q.filter = r() < 0.5 ? { ...emptyRoot('and'), items: tree.items } : tree
    if (r() < 0.3) q.order = [{ column: pick(r, COLUMNS), dir: r() < 0.5 ? 'asc' : 'desc', nulls: r() < 0.5 ? null : 'nullslast' }]
    if (r() < 0.3) q.select = ['id', pick(r, COLUMNS)]
    q.limit = pick(r, [10, 25, 100])
    q.offset = pick(r, [0, 0, 50])
    out.push(q)
  }
  return out
}

describe.skipIf(!python && process.env.CI !== 'true')('filter builder ↔ Headwater grammar', () => {
  it('has a Python with headwater to compare against', () => {
    expect(python, 'set HEADWATER_PYTHON or create ../.venv').toBeTruthy()
  })

  it('produces queries the server parses into the same conditions', () => {
    const qs = cases()
    const searches = qs.map((q) => toSearch(q))
    const parsed = serverParse(searches)
    qs.forEach((q, i) => {
      expect(parsed[i], searches[i]).toEqual(meaning(q))
    })
  })

  it('reads back what it wrote', () => {
    for (const q of cases()) {
      const s = toSearch(q)
      expect(meaning(fromSearch(s)), s).toEqual(meaning(q))
    }
  })
})
