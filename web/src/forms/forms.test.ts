import { describe, expect, it } from 'vitest'
import { findTable, parseOpenApi, type Column } from '../api/openapi.ts'
import { ApiError } from '../api/errors.ts'
import { demoOpenApi } from '../test/fixtures.ts'
import { headwaterDemoOpenApi } from '../test/headwater-demo.ts'
import { fieldNotes, placeholderOf } from './Field.tsx'
import { fromInput, inputKind, toInput, toLocalDateTime } from './fields.ts'
import { buildPayload, changedFields, initialValues } from './payload.ts'
import { mapFieldErrors, parseDetailsString } from './errors.ts'

const schema = parseOpenApi(demoOpenApi)
const customers = findTable(schema, 'customers')!
const orders = findTable(schema, 'orders')!
const col = (t: typeof orders, name: string): Column => t.columns.find((c) => c.name === name)!

describe('column type → input', () => {
  it('chooses an input per type', () => {
    const kinds = Object.fromEntries(orders.columns.map((c) => [c.name, inputKind(c)]))
    expect(kinds).toEqual({
      id: 'integer', customer_id: 'integer', total: 'number', status: 'enum', paid: 'tristate',
      created_at: 'datetime', shipped_at: 'datetime', ref: 'uuid',
    })
    expect(inputKind(col(customers, 'vip'))).toBe('checkbox')
    expect(inputKind(col(customers, 'born'))).toBe('date')
    expect(inputKind(col(customers, 'meta'))).toBe('json')
  })

  it('shows row values in inputs', () => {
    expect(toInput(col(orders, 'total'), 12.5)).toBe('12.5')
    expect(toInput(col(orders, 'paid'), null)).toBe('')
    expect(toInput(col(orders, 'paid'), false)).toBe('false')
    expect(toInput(col(customers, 'vip'), true)).toBe(true)
    expect(toInput(col(customers, 'born'), '1990-02-03')).toBe('1990-02-03')
    expect(toInput(col(orders, 'created_at'), '2024-05-06 07:08:09.123')).toBe('2024-05-06T07:08:09')
    expect(toInput(col(orders, 'created_at'), '2024-05-06T07:08')).toBe('2024-05-06T07:08:00')
    expect(toInput(col(customers, 'meta'), { a: 1 })).toBe('{\n  "a": 1\n}')
    const tz = toInput(col(orders, 'shipped_at'), '2024-05-06T07:08:09Z')
    expect(tz).toBe(toLocalDateTime(new Date('2024-05-06T07:08:09Z')))
  })
})

describe('input → value', () => {
  it('coerces numbers strictly', () => {
    expect(fromInput(col(orders, 'customer_id'), ' 42 ')).toEqual({ ok: true, value: 42 })
    expect(fromInput(col(orders, 'customer_id'), '4.2')).toEqual({ ok: false, error: 'must be a whole number' })
    expect(fromInput(col(orders, 'customer_id'), '12abc')).toMatchObject({ ok: false })
    expect(fromInput(col(orders, 'id'), '9007199254740993')).toEqual({ ok: true, value: '9007199254740993' })
    expect(fromInput(col(orders, 'total'), '-1.5e2')).toEqual({ ok: true, value: -150 })
    expect(fromInput(col(orders, 'total'), 'ten')).toEqual({ ok: false, error: 'must be a number' })
  })

  it('handles blanks by nullability', () => {
    expect(fromInput(col(customers, 'born'), '')).toEqual({ ok: true, value: null })
    expect(fromInput(col(customers, 'name'), '')).toEqual({ ok: true, value: '' })
    expect(fromInput(col(orders, 'total'), ' ')).toEqual({ ok: false, error: 'is required' })
  })

  it('coerces booleans, dates, times, JSON, UUIDs and enums', () => {
    expect(fromInput(col(customers, 'vip'), true)).toEqual({ ok: true, value: true })
    expect(fromInput(col(orders, 'paid'), 'false')).toEqual({ ok: true, value: false })
    expect(fromInput(col(customers, 'born'), '2020-13')).toMatchObject({ ok: false })
    expect(fromInput(col(orders, 'created_at'), '2024-01-02T03:04')).toEqual({ ok: true, value: '2024-01-02T03:04:00' })
    expect(fromInput(col(orders, 'shipped_at'), '2024-01-02T03:04:05')).toEqual({ ok: true, value: new Date('2024-01-02T03:04:05').toISOString() })
    expect(fromInput(col(customers, 'meta'), '{"a": [1]}')).toEqual({ ok: true, value: { a: [1] } })
    expect(fromInput(col(customers, 'meta'), '{a:1}')).toMatchObject({ ok: false, error: expect.stringContaining('valid JSON') })
    expect(fromInput(col(orders, 'ref'), 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11')).toEqual({ ok: true, value: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11' })
    expect(fromInput(col(orders, 'ref'), 'nope')).toEqual({ ok: false, error: 'must be a UUID' })
    expect(fromInput(col(orders, 'status'), 'lost')).toMatchObject({ ok: false })
    expect(fromInput(col(customers, 'email'), 'x'.repeat(21))).toEqual({ ok: false, error: 'must be at most 20 characters' })
  })
})

describe('form payloads', () => {
  it('creates: omits blanks with defaults, flags required blanks', () => {
    const initial = initialValues(customers.columns, null)
    expect(initial.vip).toBe(false)
    const values = { ...initial, name: 'Ann', born: '2000-01-01' }
    const { body, errors } = buildPayload(customers.columns, values, initial, 'create')
    expect(body).toEqual({ name: 'Ann', born: '2000-01-01', vip: false })
    expect(errors).toEqual({ email: 'is required' })
  })

  it('creates: a NOT NULL boolean with an unknown default offers "(default)"', () => {
    const active: Column = { ...col(customers, 'vip'), hasDefault: true, defaultValue: null }
    expect(inputKind(active, 'create')).toBe('tristate')
    expect(inputKind(active, 'edit')).toBe('checkbox')
    const initial = initialValues([active], null)
    expect(initial.vip).toBe('')
    expect(buildPayload([active], initial, initial, 'create').body).toEqual({})
    expect(buildPayload([active], { vip: 'true' }, initial, 'create').body).toEqual({ vip: true })
    expect(buildPayload([active], { vip: 'false' }, initial, 'create').body).toEqual({ vip: false })
  })

  it('creates with a key when given', () => {
    const initial = initialValues(customers.columns, null)
    const { body } = buildPayload(customers.columns, { ...initial, id: '7', name: 'A', email: 'a@b' }, initial, 'create')
    expect(body).toMatchObject({ id: 7, name: 'A', email: 'a@b' })
  })

  it('edits: sends only changed fields and never the key', () => {
    const row = { id: 3, customer_id: 1, total: 10, status: 'new', paid: null, created_at: '2024-01-01T00:00:00', shipped_at: null, ref: null }
    const initial = initialValues(orders.columns, row)
    const values = { ...initial, id: '99', total: '12.50', paid: 'true' }
    expect(changedFields(values, initial).sort()).toEqual(['id', 'paid', 'total'])
    expect(buildPayload(orders.columns, values, initial, 'edit')).toEqual({ body: { total: 12.5, paid: true }, errors: {} })
  })

  it('edits: reports every invalid field at once', () => {
    const row = { id: 3, customer_id: 1, total: 10, status: 'new', paid: null, created_at: '2024-01-01T00:00:00', shipped_at: null, ref: null }
    const initial = initialValues(orders.columns, row)
    const { errors } = buildPayload(orders.columns, { ...initial, customer_id: 'x', total: '' }, initial, 'edit')
    expect(errors).toEqual({ customer_id: 'must be a whole number', total: 'is required' })
  })

  it('clearing a nullable field sends null', () => {
    const row = { id: 1, name: 'A', email: 'e', vip: false, born: '1999-01-01', meta: null }
    const initial = initialValues(customers.columns, row)
    expect(buildPayload(customers.columns, { ...initial, born: '' }, initial, 'edit').body).toEqual({ born: null })
  })
})

describe('server errors → fields', () => {
  const cols = orders.columns.map((c) => c.name)

  it('reads "col: message; col2: message" details', () => {
    const err = new ApiError(400, 'Invalid body', '22P02', 'total: must be a number; customer_id: must be an integer')
    expect(mapFieldErrors(err, cols)).toEqual({
      fields: { total: 'must be a number', customer_id: 'must be an integer' },
      general: '22P02 · Invalid body',
    })
  })

  it('reads details given as an object or a list', () => {
    expect(mapFieldErrors(new ApiError(400, 'Invalid', 'PGRST204', { total: 'must be a number', other: 'x' }), cols).fields).toEqual({ total: 'must be a number' })
    expect(mapFieldErrors(new ApiError(400, 'Invalid', null, [{ column: 'status', message: 'bad' }]), cols).fields).toEqual({ status: 'bad' })
  })

  it('finds the column in PostgreSQL messages', () => {
    const notNull = new ApiError(400, 'null value in column "total" of relation "orders" violates not-null constraint', '23502')
    expect(mapFieldErrors(notNull, cols).fields).toEqual({ total: notNull.message })
    const unknown = new ApiError(400, "Could not find the 'colour' column of 'orders' in the schema cache", 'PGRST204')
    expect(mapFieldErrors(unknown, [...cols, 'colour']).fields).toHaveProperty('colour')
    const fk = new ApiError(409, 'insert or update on table "orders" violates foreign key constraint', '23503', 'Key (customer_id)=(999) is not present in table "customers".')
    expect(mapFieldErrors(fk, cols).fields).toEqual({ customer_id: 'Key (customer_id)=(999) is not present in table "customers".' })
  })

  it('finds the column of a PostgreSQL CHECK by the constraint’s default name', () => {
    const check = new ApiError(400, 'new row for relation "orders" violates check constraint "orders_customer_id_check"', '23514')
    expect(mapFieldErrors(check, cols).fields).toEqual({ customer_id: check.message })
    const other = new ApiError(400, 'new row for relation "orders" violates check constraint "sane_dates"', '23514')
    expect(mapFieldErrors(other, cols).fields).toEqual({})
  })

  it('finds the column in SQLite messages', () => {
    expect(mapFieldErrors(new ApiError(409, 'UNIQUE constraint failed: orders.status', '23505'), cols).fields).toHaveProperty('status')
    expect(mapFieldErrors(new ApiError(400, 'CHECK constraint failed: total >= 0', '23514'), cols).fields).toHaveProperty('total')
    expect(mapFieldErrors(new ApiError(400, 'NOT NULL constraint failed: orders.customer_id', '23502'), cols).fields).toHaveProperty('customer_id')
  })

  it('keeps unattributable errors general', () => {
    const r = mapFieldErrors(new ApiError(500, 'boom', 'XX000', 'something else', 'retry'), cols)
    expect(r).toEqual({ fields: {}, general: 'XX000 · boom — something else — Hint: retry' })
    expect(mapFieldErrors(new Error('network'), cols)).toEqual({ fields: {}, general: 'network' })
  })

  it('ignores names that are not columns', () => {
    expect(parseDetailsString('nope: x; total: y', new Set(['total']))).toEqual({ fields: { total: 'y' }, rest: ['nope: x'] })
  })
})

describe('insert form on the document Headwater serves', () => {
  const served = parseOpenApi(headwaterDemoOpenApi)
  const servedOrders = findTable(served, 'orders')!
  const c = (name: string) => col(servedOrders, name)

  it('marks NOT NULL columns without a default required, and says which have a default', () => {
    expect(fieldNotes(c('customer_id'), 'create')).toEqual(['required'])
    expect(placeholderOf(c('customer_id'), 'create')).toBe('')
    expect(placeholderOf(c('ordered_at'), 'create')).toBe('')
    expect(fieldNotes(c('status'), 'create')).toEqual(['has default'])
    expect(placeholderOf(c('status'), 'create')).toBe('default')
    expect(placeholderOf(c('total'), 'create')).toBe('default')
    expect(placeholderOf(c('note'), 'create')).toBe('NULL')
  })

  it('offers the key as generated on insert, and never says "default" on an update', () => {
    expect(fieldNotes(c('id'), 'create')).toEqual(['key', 'generated'])
    expect(placeholderOf(c('id'), 'create')).toBe('generated')
    expect(placeholderOf(c('status'), 'edit')).toBe('')
    expect(placeholderOf(c('total'), 'edit')).toBe('')
    expect(placeholderOf(c('note'), 'edit')).toBe('NULL')
  })

  it('refuses an insert without the required columns, and leaves defaults and the key to the server', () => {
    const initial = initialValues(servedOrders.columns, null)
    const { body, errors } = buildPayload(servedOrders.columns, { ...initial, note: 'hi' }, initial, 'create')
    expect(errors).toEqual({ customer_id: 'is required', ordered_at: 'is required' })
    expect(body).toEqual({ note: 'hi' })
    const ok = buildPayload(servedOrders.columns, { ...initial, customer_id: '4', ordered_at: '2024-01-02T03:04' }, initial, 'create')
    expect(ok).toEqual({ body: { customer_id: 4, ordered_at: '2024-01-02T03:04:00' }, errors: {} })
  })
})
