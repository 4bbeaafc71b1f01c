// Build filters as conditions (column, operator, value) combined with and/or, nested one group
// deep or more; the PostgREST query they make is shown live beside them.

import { Icon } from './Icon.tsx'
import { useId } from 'react'
import type { Column } from '../api/openapi.ts'
import {
  type Condition,
  type FilterNode,
  type Group,
  IS_VALUES,
  OPERATORS,
  OPERATOR_LABELS,
  type Operator,
  appendTo,
  condition,
  countConditions,
  group,
  isComplete,
  removeNode,
  updateNode,
} from '../filters/model.ts'

export function FilterBuilder({
  columns,
  value,
  onChange,
}: {
  columns: Column[]
  value: Group
  onChange: (g: Group) => void
}) {
  const first = columns[0]?.name ?? ''
  return (
    <div className="filter-builder" data-testid="filter-builder">
      <GroupEditor
        node={value}
        root={value}
        columns={columns}
        isRoot
        onChange={onChange}
        newCondition={() => condition(first)}
      />
      {countConditions(value) === 0 && value.items.length === 0 ? <p className="muted small">No filters: every row is shown.</p> : null}
    </div>
  )
}

function GroupEditor({
  node,
  root,
  columns,
  isRoot,
  onChange,
  newCondition,
}: {
  node: Group
  root: Group
  columns: Column[]
  isRoot: boolean
  onChange: (g: Group) => void
  newCondition: () => Condition
}) {
  const id = useId()
  const set = (fn: (n: FilterNode) => FilterNode) => onChange(updateNode(root, node.id, fn))
  return (
    <fieldset className={`filter-group${isRoot ? ' root' : ''}`}>
      <legend className="sr-only">{isRoot ? 'Filters' : 'Filter group'}</legend>
      <div className="group-head">
        <label htmlFor={`${id}-comb`} className="muted small">
          {isRoot ? 'Rows matching' : 'Group matching'}
        </label>
        <select
          id={`${id}-comb`}
          aria-label={isRoot ? 'Combine filters with' : 'Combine group with'}
          value={`${node.negate ? 'not.' : ''}${node.combinator}`}
          onChange={(e) => {
            const v = e.target.value
            set((n) => ({ ...(n as Group), negate: v.startsWith('not.'), combinator: v.endsWith('or') ? 'or' : 'and' }))
          }}
        >
          <option value="and">all (and)</option>
          <option value="or">any (or)</option>
          <option value="not.and">not all (not.and)</option>
          <option value="not.or">none (not.or)</option>
        </select>
        {isRoot ? null : (
          <button type="button" className="icon-btn" aria-label="Remove group" onClick={() => onChange(removeNode(root, node.id))}>
            <Icon name="close" />
          </button>
        )}
      </div>
      {node.items.map((item) =>
        item.kind === 'group' ? (
          <GroupEditor key={item.id} node={item} root={root} columns={columns} isRoot={false} onChange={onChange} newCondition={newCondition} />
        ) : (
          <ConditionEditor key={item.id} node={item} root={root} columns={columns} onChange={onChange} />
        ),
      )}
      <div className="group-actions">
        <button type="button" className="btn small" onClick={() => onChange(appendTo(root, node.id, newCondition()))}>
          + Condition
        </button>
        <button type="button" className="btn small ghost" onClick={() => onChange(appendTo(root, node.id, group(node.combinator === 'and' ? 'or' : 'and', [newCondition()])))}>
          + Group
        </button>
      </div>
    </fieldset>
  )
}

function placeholderFor(op: Operator, col: Column | undefined): string {
  if (op === 'in') return 'a, b, "c,d"'
  if (op === 'like' || op === 'ilike') return 'Jo*'
  switch (col?.kind) {
    case 'integer':
    case 'number':
      return '42'
    case 'date':
      return 'YYYY-MM-DD'
    case 'timestamp':
    case 'timestamptz':
      return 'YYYY-MM-DDTHH:MM:SS'
    case 'boolean':
      return 'true'
    default:
      return 'value'
  }
}

function ConditionEditor({ node, root, columns, onChange }: { node: Condition; root: Group; columns: Column[]; onChange: (g: Group) => void }) {
  const id = useId()
  const set = (patch: Partial<Condition>) => onChange(updateNode(root, node.id, (n) => ({ ...(n as Condition), ...patch })))
  const col = columns.find((c) => c.name === node.column)
  const incomplete = !isComplete(node)
  return (
    <div className={`condition${incomplete ? ' incomplete' : ''}`} data-testid="condition">
      <select aria-label="Column" value={node.column} onChange={(e) => set({ column: e.target.value })}>
        {columns.some((c) => c.name === node.column) ? null : <option value={node.column}>{node.column || '— column —'}</option>}
        {columns.map((c) => (
          <option key={c.name} value={c.name}>
            {c.name}
          </option>
        ))}
      </select>
      <label className="not-toggle" title="Negate (not.)">
        <input type="checkbox" checked={node.negate} onChange={(e) => set({ negate: e.target.checked })} />
        not
      </label>
      <select
        aria-label="Operator"
        value={node.op}
        onChange={(e) => {
          const op = e.target.value as Operator
          set({ op, value: op === 'is' ? 'null' : node.op === 'is' ? '' : node.value })
        }}
      >
        {OPERATORS.map((op) => (
          <option key={op} value={op} title={OPERATOR_LABELS[op]}>
            {op} — {OPERATOR_LABELS[op]}
          </option>
        ))}
      </select>
      {node.op === 'is' ? (
        <select aria-label="Value" value={node.value} onChange={(e) => set({ value: e.target.value })}>
          {IS_VALUES.map((v) => (
            <option key={v} value={v}>
              {v}
            </option>
          ))}
        </select>
      ) : (
        <input
          id={`${id}-v`}
          aria-label="Value"
          aria-invalid={incomplete || undefined}
          className="value mono"
          value={node.value}
          placeholder={placeholderFor(node.op, col)}
          onChange={(e) => set({ value: e.target.value })}
        />
      )}
      <button type="button" className="icon-btn" aria-label="Remove condition" onClick={() => onChange(removeNode(root, node.id))}>
        <Icon name="close" />
      </button>
    </div>
  )
}
