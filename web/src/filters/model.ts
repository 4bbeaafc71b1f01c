// The filter builder's model: a tree of conditions combined with and/or.

export const OPERATORS = ['eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'like', 'ilike', 'in', 'is'] as const
export type Operator = (typeof OPERATORS)[number]

export const OPERATOR_LABELS: Record<Operator, string> = {
  eq: 'equals',
  neq: 'not equal',
  gt: 'greater than',
  gte: 'greater or equal',
  lt: 'less than',
  lte: 'less or equal',
  like: 'like (* wildcard)',
  ilike: 'ilike (case-insensitive)',
  in: 'in list',
  is: 'is',
}

/** Values accepted by the `is` operator. */
export const IS_VALUES = ['null', 'true', 'false', 'unknown'] as const

export type Combinator = 'and' | 'or'

export interface Condition {
  kind: 'condition'
  id: string
  column: string
  op: Operator
  /** `not.` prefix. */
  negate: boolean
  /**
   * The value as the person typed it. For `in` it is a comma-separated list in which an item may
   * be double-quoted to contain commas (`a, b, "c,d"`); for `is` one of IS_VALUES.
   */
  value: string
}

export interface Group {
  kind: 'group'
  id: string
  combinator: Combinator
  negate: boolean
  items: FilterNode[]
}

export type FilterNode = Condition | Group

let nextId = 0
export function newId(): string {
  nextId += 1
  return `f${nextId}`
}

export function isOperator(s: string): s is Operator {
  return (OPERATORS as readonly string[]).includes(s)
}

export function emptyRoot(combinator: Combinator = 'and'): Group {
  return { kind: 'group', id: newId(), combinator, negate: false, items: [] }
}

export function condition(column: string, op: Operator = 'eq', value = '', negate = false): Condition {
  return { kind: 'condition', id: newId(), column, op, negate, value }
}

export function group(combinator: Combinator, items: FilterNode[] = [], negate = false): Group {
  return { kind: 'group', id: newId(), combinator, negate, items }
}

/** A condition is complete when it can be sent: it has a column and, unless `is`, a value. */
export function isComplete(c: Condition): boolean {
  if (!c.column) return false
  if (c.op === 'is') return (IS_VALUES as readonly string[]).includes(c.value)
  if (c.op === 'in') return true // `in.()` is valid: matches nothing
  return c.value !== ''
}

/** Number of complete conditions in the tree. */
export function countConditions(node: FilterNode): number {
  if (node.kind === 'condition') return isComplete(node) ? 1 : 0
  return node.items.reduce((n, item) => n + countConditions(item), 0)
}

// ---- immutable tree edits (used by the builder UI) ----

export function updateNode(root: Group, id: string, fn: (n: FilterNode) => FilterNode): Group {
  const visit = (node: FilterNode): FilterNode => {
    if (node.id === id) return fn(node)
    if (node.kind === 'group') return { ...node, items: node.items.map(visit) }
    return node
  }
  return visit(root) as Group
}

export function removeNode(root: Group, id: string): Group {
  const visit = (g: Group): Group => ({
    ...g,
    items: g.items.filter((i) => i.id !== id).map((i) => (i.kind === 'group' ? visit(i) : i)),
  })
  return visit(root)
}

export function appendTo(root: Group, groupId: string, node: FilterNode): Group {
  return updateNode(root, groupId, (g) => (g.kind === 'group' ? { ...g, items: [...g.items, node] } : g))
}
