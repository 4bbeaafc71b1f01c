import { describe, expect, it } from 'vitest'
import { columnKind, findTable, parseForeignKey, parseOpenApi } from './openapi.ts'
import { demoOpenApi } from '../test/fixtures.ts'
import { headwaterDemoOpenApi } from '../test/headwater-demo.ts'

describe('OpenAPI → schema', () => {
  const schema = parseOpenApi(demoOpenApi)

  it('lists the readable tables and views, sorted, without rpc', () => {
    expect(schema.tables.map((t) => t.name)).toEqual(['customer_totals', 'customers', 'orders'])
    expect(schema.title).toBe('Headwater')
  })

  it('reads keys, foreign keys and permissions', () => {
    const orders = findTable(schema, 'orders')!
    expect(orders.pk).toEqual(['id'])
    expect(orders.columns.find((c) => c.name === 'customer_id')?.fk).toEqual({ table: 'customers', column: 'id' })
    expect(orders.canUpdate).toBe(true)
    const view = findTable(schema, 'customer_totals')!
    expect([view.canInsert, view.canUpdate, view.canDelete]).toEqual([false, false, false])
    expect(view.pk).toEqual([])
  })

  it('links the reverse relationship', () => {
    expect(findTable(schema, 'customers')!.referencedBy).toEqual([{ table: 'orders', column: 'customer_id', refColumn: 'id' }])
  })

  it('reads nullability, requiredness and defaults', () => {
    const customers = findTable(schema, 'customers')!
    const byName = Object.fromEntries(customers.columns.map((c) => [c.name, c]))
    expect(byName.name).toMatchObject({ required: true, nullable: false, comment: 'Full name' })
    expect(byName.born).toMatchObject({ required: false, nullable: true })
    expect(byName.vip).toMatchObject({ hasDefault: true, defaultValue: false })
    expect(byName.email?.maxLength).toBe(20)
  })

  it('maps formats to kinds', () => {
    expect(columnKind({ format: 'int8' })).toBe('integer')
    expect(columnKind({ type: 'integer' })).toBe('integer')
    expect(columnKind({ format: 'numeric', type: 'number' })).toBe('number')
    expect(columnKind({ format: 'double precision' })).toBe('number')
    expect(columnKind({ format: 'boolean' })).toBe('boolean')
    expect(columnKind({ format: 'date' })).toBe('date')
    expect(columnKind({ format: 'timestamp without time zone' })).toBe('timestamp')
    expect(columnKind({ format: 'timestamp with time zone' })).toBe('timestamptz')
    expect(columnKind({ format: 'time' })).toBe('time')
    expect(columnKind({ format: 'jsonb' })).toBe('json')
    expect(columnKind({ type: 'object' })).toBe('json')
    expect(columnKind({ format: 'uuid' })).toBe('uuid')
    expect(columnKind({ format: 'text', enum: ['a'] })).toBe('enum')
    expect(columnKind({ format: 'character varying', type: 'string' })).toBe('text')
    // Headwater: date-time format with the database type beside it
    expect(columnKind({ type: 'string', format: 'date-time', 'x-db-type': 'TIMESTAMP' })).toBe('timestamp')
    expect(columnKind({ type: 'string', format: 'date-time', 'x-db-type': 'TIMESTAMP WITH TIME ZONE' })).toBe('timestamptz')
    expect(columnKind({ type: 'string', format: 'date-time' })).toBe('timestamptz')
    expect(columnKind({ type: 'number', format: 'NUMERIC(10, 2)', 'x-db-type': 'NUMERIC(10, 2)' })).toBe('number')
    expect(columnKind({ type: 'string', format: 'VARCHAR(20)' })).toBe('text')
    expect(columnKind({ nullable: true })).toBe('json')
  })

  it('parses the foreign key note in either form', () => {
    expect(parseForeignKey("<fk table='a' column='b'/>")).toEqual({ table: 'a', column: 'b' })
    expect(parseForeignKey('This is a Foreign Key to `a.b`.')).toEqual({ table: 'a', column: 'b' })
    expect(parseForeignKey('nothing here')).toBeNull()
  })

  it('accepts a Swagger 2 document (definitions)', () => {
    const s = parseOpenApi({ swagger: '2.0', paths: { '/t': { get: {} } }, definitions: { t: { properties: { a: { type: 'integer' } }, required: ['a'] } } })
    expect(s.tables[0]?.columns[0]).toMatchObject({ name: 'a', kind: 'integer', nullable: false })
  })

  it('rejects a document that is not an object', () => {
    expect(() => parseOpenApi('nope')).toThrow()
  })
})

describe('the document Headwater serves (demo, SQLite)', () => {
  const schema = parseOpenApi(headwaterDemoOpenApi)
  const col = (table: string, name: string) => findTable(schema, table)!.columns.find((c) => c.name === name)!

  it('shows the view’s computed columns with their real types', () => {
    const view = findTable(schema, 'customer_totals')!
    expect(view.columns.map((c) => [c.name, c.format, c.kind])).toEqual([
      ['customer_id', 'integer', 'integer'],
      ['name', 'text', 'text'],
      ['order_count', 'integer', 'integer'],
      ['total_spent', 'real', 'number'],
    ])
    // Read-only: nothing about defaults is claimed for a view.
    expect(view.columns.some((c) => c.hasDefault || c.required)).toBe(false)
  })

  it('reads which columns an insert needs from the POST body (not from the component schema)', () => {
    expect(col('orders', 'customer_id')).toMatchObject({ required: true, hasDefault: false, nullable: false })
    expect(col('orders', 'ordered_at')).toMatchObject({ required: true, hasDefault: false })
    expect(col('orders', 'status')).toMatchObject({ required: false, hasDefault: true })
    expect(col('orders', 'total')).toMatchObject({ required: false, hasDefault: true })
    expect(col('orders', 'note')).toMatchObject({ required: false, hasDefault: false, nullable: true })
    expect(col('customers', 'name')).toMatchObject({ required: true })
    expect(col('order_items', 'unit_price')).toMatchObject({ required: true })
  })

  it('treats an identity/rowid key as generated: optional on insert', () => {
    for (const t of ['customers', 'orders', 'order_items', 'products']) {
      expect(col(t, 'id')).toMatchObject({ isPk: true, required: false, generated: true })
    }
    expect(col('orders', 'customer_id').generated).toBe(false)
  })

  it('takes a SQLite column without a type (ANY) as any JSON value', () => {
    expect(columnKind({ 'x-db-type': 'any', format: 'any', nullable: true })).toBe('json')
  })
})
