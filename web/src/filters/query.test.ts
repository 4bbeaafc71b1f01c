import { describe, expect, it } from 'vitest'
import { condition, group, emptyRoot, removeNode, appendTo, updateNode, countConditions } from './model.ts'
import {
  defaultQuery,
  filterParams,
  fromSearch,
  toSearch,
  toggleOrder,
  equalsQuery,
  parseOrder,
  decodeParams,
  type TableQuery,
} from './query.ts'
import { formatList, parseList, splitTopLevel, quoteIfNeeded } from './grammar.ts'

function q(partial: Partial<TableQuery>): TableQuery {
  return { ...defaultQuery(), ...partial }
}

function and(...items: ReturnType<typeof condition>[]) {
  return { ...emptyRoot('and'), items }
}

describe('filter builder → PostgREST query', () => {
  it('produces nothing but the page for an empty filter', () => {
    expect(toSearch(defaultQuery())).toBe('limit=25')
  })

  it('puts each AND condition in its own column parameter', () => {
    const s = toSearch(q({ filter: and(condition('status', 'eq', 'paid'), condition('total', 'gte', '100')) }))
    expect(s).toBe('status=eq.paid&total=gte.100&limit=25')
  })

  it('supports every operator', () => {
    const cases: [ReturnType<typeof condition>, string][] = [
      [condition('a', 'eq', '1'), 'a=eq.1'],
      [condition('a', 'neq', '1'), 'a=neq.1'],
      [condition('a', 'gt', '1'), 'a=gt.1'],
      [condition('a', 'gte', '1'), 'a=gte.1'],
      [condition('a', 'lt', '1'), 'a=lt.1'],
      [condition('a', 'lte', '1.5'), 'a=lte.1.5'],
      [condition('name', 'like', 'Jo*'), 'name=like.Jo*'],
      [condition('name', 'ilike', '*smith*'), 'name=ilike.*smith*'],
      [condition('id', 'in', '1, 2,3'), 'id=in.(1,2,3)'],
      [condition('x', 'is', 'null'), 'x=is.null'],
      [condition('x', 'is', 'true'), 'x=is.true'],
      [condition('x', 'is', 'false'), 'x=is.false'],
      [condition('x', 'is', 'null', true), 'x=not.is.null'],
      [condition('a', 'eq', '1', true), 'a=not.eq.1'],
    ]
    for (const [c, expected] of cases) expect(toSearch(q({ filter: and(c) }), { paging: false })).toBe(expected)
  })

  it('quotes in-list items that contain reserved characters', () => {
    const s = toSearch(q({ filter: and(condition('name', 'in', 'a, "c,d", "say \\"hi\\""')) }), { paging: false })
    expect(decodeURIComponent(s)).toBe('name=in.(a,"c,d","say \\"hi\\"")')
  })

  it('combines with OR into one logic tree, quoting values with reserved characters', () => {
    const root = { ...emptyRoot('or'), items: [condition('status', 'eq', 'paid'), condition('note', 'eq', 'a,b (x)')] }
    const params = filterParams(root)
    expect(params).toEqual([['or', '(status.eq.paid,note.eq."a,b (x)")']])
  })

  it('nests groups', () => {
    const root = {
      ...emptyRoot('and'),
      items: [condition('customer_id', 'eq', '7'), group('or', [condition('status', 'eq', 'paid'), condition('total', 'gt', '100')])],
    }
    expect(filterParams(root)).toEqual([
      ['customer_id', 'eq.7'],
      ['or', '(status.eq.paid,total.gt.100)'],
    ])
    const deep = { ...emptyRoot('or'), items: [condition('a', 'eq', '1'), group('and', [condition('b', 'gt', '2'), condition('c', 'is', 'null', true)], true)] }
    expect(filterParams(deep)).toEqual([['or', '(a.eq.1,not.and(b.gt.2,c.not.is.null))']])
  })

  it('skips incomplete conditions and empty groups', () => {
    const root = { ...emptyRoot('and'), items: [condition('a', 'eq', ''), condition('', 'eq', 'x'), group('or', [])] }
    expect(filterParams(root)).toEqual([])
    expect(countConditions(root)).toBe(0)
  })

  it('percent-encodes values but keeps PostgREST punctuation readable', () => {
    const s = toSearch(q({ filter: and(condition('name', 'eq', 'A&B = 100% #1')) }), { paging: false })
    expect(s).toBe('name=eq.A%26B%20%3D%20100%25%20%231')
    expect(toSearch(q({ select: ['id', 'name'], order: [{ column: 'id', dir: 'desc', nulls: 'nullslast' }] }), { paging: false })).toBe(
      'select=id,name&order=id.desc.nullslast',
    )
  })

  it('adds select, order, limit and offset', () => {
    const s = toSearch(q({ select: ['id', 'total'], order: [{ column: 'total', dir: 'desc', nulls: null }, { column: 'id', dir: 'asc', nulls: null }], limit: 50, offset: 100 }))
    expect(s).toBe('select=id,total&order=total.desc,id.asc&limit=50&offset=100')
  })
})

describe('PostgREST query → filter builder (round trip)', () => {
  const canonical = [
    'limit=25',
    'status=eq.paid&limit=25',
    'status=eq.paid&total=gte.100&order=created_at.desc&limit=10&offset=20',
    'select=id,name&name=ilike.*ann*&limit=25',
    'id=in.(1,2,3)&limit=25',
    'name=in.(a,%22c,d%22)&limit=25',
    'x=not.is.null&y=is.true&limit=25',
    'a=not.eq.1&limit=25',
    'or=(status.eq.paid,total.gt.100)&limit=25',
    'customer_id=eq.7&or=(status.eq.paid,total.gt.100)&limit=25',
    'or=(a.eq.1,not.and(b.gt.2,c.not.is.null))&limit=25',
    'not.or=(a.eq.1,b.eq.2)&limit=25',
    'or=(note.eq.%22a,b%20(x)%22,id.in.(1,2))&limit=25',
    'name=eq.A%26B%20%3D%20100%25&limit=25',
    'order=total.desc.nullslast,id.asc&limit=100',
  ]
  for (const s of canonical) {
    it(`round-trips ${s}`, () => {
      expect(toSearch(fromSearch(s))).toBe(s)
    })
  }

  it('parses conditions into the model', () => {
    const parsed = fromSearch('status=eq.paid&or=(a.lt.1,b.in.(x,"y,z"))&limit=50&offset=50')
    expect(parsed.limit).toBe(50)
    expect(parsed.offset).toBe(50)
    expect(parsed.filter.combinator).toBe('and')
    const [first, second] = parsed.filter.items
    expect(first).toMatchObject({ kind: 'condition', column: 'status', op: 'eq', value: 'paid', negate: false })
    expect(second).toMatchObject({ kind: 'group', combinator: 'or' })
    if (second?.kind !== 'group') throw new Error('expected a group')
    expect(second.items[1]).toMatchObject({ column: 'b', op: 'in', value: 'x, "y,z"' })
  })

  it('reads a lone or=() as the root in "match any" mode', () => {
    const parsed = fromSearch('or=(a.eq.1,b.eq.2)')
    expect(parsed.filter.combinator).toBe('or')
    expect(parsed.filter.items).toHaveLength(2)
  })

  it('unquotes values in logic trees, but keeps top-level values literal', () => {
    expect(fromSearch('or=(n.eq."a,b",m.eq."q\\"x")').filter.items).toMatchObject([{ value: 'a,b' }, { value: 'q"x' }])
    expect(fromSearch('n=eq."quoted"').filter.items).toMatchObject([{ value: '"quoted"' }])
  })

  it('accepts is.not_null as negated is.null', () => {
    expect(fromSearch('x=is.not_null').filter.items).toMatchObject([{ op: 'is', value: 'null', negate: true }])
  })

  it('keeps what it does not model verbatim', () => {
    const parsed = fromSearch('tags=cs.{a,b}&select=*,customer:customers(*)&limit=25')
    expect(parsed.extras).toEqual([['tags', 'cs.{a,b}']])
    expect(parsed.select).toEqual(['*', 'customer:customers(*)'])
    expect(toSearch(parsed)).toContain('tags=cs.%7Ba,b%7D')
  })

  it('ignores a bad limit or offset', () => {
    expect(fromSearch('limit=abc&offset=-3')).toMatchObject({ limit: 25, offset: 0 })
  })

  it('decodes + as space and tolerates broken escapes', () => {
    expect(decodeParams('a=eq.x+y&b=eq.%E0%A4%A')).toEqual([['a', 'eq.x y'], ['b', 'eq.%E0%A4%A']])
  })
})

describe('grammar', () => {
  it('splits at top-level commas only', () => {
    expect(splitTopLevel('a.eq.1,b.in.(1,2),c.eq."x,y",or(d.eq.1,e.eq.2)')).toEqual([
      'a.eq.1', 'b.in.(1,2)', 'c.eq."x,y"', 'or(d.eq.1,e.eq.2)',
    ])
  })
  it('parses and formats lists', () => {
    expect(parseList('a, "b,c" ,d')).toEqual(['a', 'b,c', 'd'])
    expect(parseList('  ')).toEqual([])
    expect(formatList(['a', 'b,c', ' padded', ''])).toBe('(a,"b,c"," padded","")')
  })
  it('quotes only when needed', () => {
    expect(quoteIfNeeded('plain')).toBe('plain')
    expect(quoteIfNeeded('1.5')).toBe('1.5')
    expect(quoteIfNeeded('a\\b')).toBe('"a\\\\b"')
  })
})

describe('ordering and relationships', () => {
  it('cycles a header: none → asc → desc → none', () => {
    let order = toggleOrder([], 'id', false)
    expect(order).toEqual([{ column: 'id', dir: 'asc', nulls: null }])
    order = toggleOrder(order, 'id', false)
    expect(order).toEqual([{ column: 'id', dir: 'desc', nulls: null }])
    expect(toggleOrder(order, 'id', false)).toEqual([])
  })
  it('adds a secondary sort with shift', () => {
    const order = toggleOrder([{ column: 'a', dir: 'asc', nulls: null }], 'b', true)
    expect(order.map((o) => o.column)).toEqual(['a', 'b'])
    expect(toggleOrder(order, 'a', false)).toEqual([{ column: 'a', dir: 'desc', nulls: null }])
  })
  it('parses order terms', () => {
    expect(parseOrder('a.desc.nullsfirst,b,c.asc')).toEqual([
      { column: 'a', dir: 'desc', nulls: 'nullsfirst' },
      { column: 'b', dir: 'asc', nulls: null },
      { column: 'c', dir: 'asc', nulls: null },
    ])
  })
  it('builds the query that follows a foreign key', () => {
    expect(toSearch(equalsQuery('customer_id', 42))).toBe('customer_id=eq.42&limit=25')
    expect(toSearch(equalsQuery('parent', null))).toBe('parent=is.null&limit=25')
  })
})

describe('tree edits', () => {
  it('appends, updates and removes nodes immutably', () => {
    const root = emptyRoot()
    const c = condition('a')
    const g = group('or')
    let next = appendTo(appendTo(root, root.id, c), root.id, g)
    next = appendTo(next, g.id, condition('b', 'gt', '1'))
    next = updateNode(next, c.id, (n) => ({ ...n, value: '5' }) as typeof n)
    expect(root.items).toHaveLength(0)
    expect(filterParams(next)).toEqual([['a', 'eq.5'], ['or', '(b.gt.1)']])
    expect(filterParams(removeNode(next, g.id))).toEqual([['a', 'eq.5']])
  })
})
