// @vitest-environment jsdom
// The edit form end to end in the DOM: what is sent, server errors on fields, optimistic
// update and its rollback.

import { afterEach, beforeAll, describe, expect, it, vi } from 'vitest'
import { act, cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react'
import { QueryClient, QueryClientProvider } from '@tanstack/react-query'
import { findTable, parseOpenApi } from '../api/openapi.ts'
import { rowsKey } from '../api/hooks.ts'
import type { Page } from '../api/rows.ts'
import { AuthProvider } from '../auth/session.tsx'
import { ToastProvider } from './Toasts.tsx'
import { RowDialog } from './RowDialog.tsx'
import { demoOpenApi } from '../test/fixtures.ts'
import { headwaterDemoOpenApi } from '../test/headwater-demo.ts'

beforeAll(() => {
  // jsdom has <dialog> but not its modal methods.
  const proto = HTMLDialogElement.prototype as HTMLDialogElement & { showModal: () => void; close: () => void }
  proto.showModal ??= function (this: HTMLDialogElement) {
    this.setAttribute('open', '')
  }
  proto.close ??= function (this: HTMLDialogElement) {
    this.removeAttribute('open')
  }
})

afterEach(() => {
  cleanup()
  vi.unstubAllGlobals()
})

const orders = findTable(parseOpenApi(demoOpenApi), 'orders')!
const row = { id: 5, customer_id: 1, total: 10, status: 'new', paid: null, created_at: '2024-01-01T00:00:00', shipped_at: null, ref: null }
const pageKey = [...rowsKey('orders', 'limit=25'), 'anon']

function setup(respond: (url: string, init: RequestInit) => Promise<Response>) {
  const calls: { url: string; init: RequestInit }[] = []
  vi.stubGlobal('fetch', (url: string, init: RequestInit) => {
    calls.push({ url, init })
    return respond(url, init)
  })
  const qc = new QueryClient({ defaultOptions: { queries: { retry: false } } })
  qc.setQueryData<Page>(pageKey, { rows: [row], total: 1, offset: 0 })
  const onClose = vi.fn()
  render(
    <QueryClientProvider client={qc}>
      <AuthProvider>
        <ToastProvider>
          <RowDialog table={orders} state={{ mode: 'edit', row }} onClose={onClose} onDelete={() => {}} />
        </ToastProvider>
      </AuthProvider>
    </QueryClientProvider>,
  )
  return { calls, qc, onClose }
}

const json = (body: unknown, status = 200) => new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } })

describe('RowDialog', () => {
  it('sends only the changed fields as a PATCH addressed by the key', async () => {
    const { calls, onClose } = setup(async () => json([{ ...row, total: 12.5 }]))
    fireEvent.change(screen.getByLabelText(/^total/), { target: { value: '12.50' } })
    fireEvent.click(screen.getByRole('button', { name: 'Save' }))
    await waitFor(() => expect(onClose).toHaveBeenCalled())
    expect(calls).toHaveLength(1)
    const { url, init } = calls[0]!
    expect(init.method).toBe('PATCH')
    expect(url).toMatch(/\/orders\?id=eq\.5$/)
    expect(JSON.parse(init.body as string)).toEqual({ total: 12.5 })
    expect((init.headers as Record<string, string>).Prefer).toBe('return=representation')
  })

  it('shows client-side errors on the field without calling the server', async () => {
    const { calls } = setup(async () => json([]))
    fireEvent.change(screen.getByLabelText(/^total/), { target: { value: 'ten' } })
    fireEvent.click(screen.getByRole('button', { name: 'Save' }))
    expect(await screen.findByText('must be a number')).toBeTruthy()
    expect(screen.getByLabelText(/^total/).getAttribute('aria-invalid')).toBe('true')
    expect(calls).toHaveLength(0)
  })

  it('updates the grid optimistically, then rolls back and shows the server’s field errors', async () => {
    let reject!: (r: Response) => void
    const { qc, onClose } = setup(() => new Promise<Response>((resolve) => (reject = resolve)))
    fireEvent.change(screen.getByLabelText(/^total/), { target: { value: '99' } })
    fireEvent.change(screen.getByLabelText(/^customer_id/), { target: { value: '2' } })
    fireEvent.click(screen.getByRole('button', { name: 'Save' }))
    await waitFor(() => expect(qc.getQueryData<Page>(pageKey)?.rows[0]).toMatchObject({ total: 99, customer_id: 2 }))
    await act(async () => {
      reject(json({ code: '23514', message: 'Invalid row', details: 'total: must be at most 50; customer_id: no such customer', hint: null }, 400))
    })
    expect(await screen.findByText('must be at most 50')).toBeTruthy()
    expect(screen.getByText('no such customer')).toBeTruthy()
    expect(screen.getByTestId('form-error').textContent).toContain('23514 · Invalid row')
    expect(qc.getQueryData<Page>(pageKey)?.rows[0]).toEqual(row)
    expect(onClose).not.toHaveBeenCalled()
    // What the person typed is kept, to fix and resend.
    expect((screen.getByLabelText(/^total/) as HTMLInputElement).value).toBe('99')
  })

  it('renders inputs by column type', () => {
    setup(async () => json([]))
    expect((screen.getByLabelText(/^id/) as HTMLInputElement).disabled).toBe(true) // keys are fixed
    expect((screen.getByLabelText(/^created_at/) as HTMLInputElement).type).toBe('datetime-local')
    expect(screen.getByLabelText(/^status/).tagName).toBe('SELECT')
    expect(screen.getByLabelText(/^paid/).tagName).toBe('SELECT')
    expect(screen.getByRole('link', { name: 'customers where id = 1' }).getAttribute('href')).toBe('#/tables/customers?id=eq.1&limit=25')
  })
})

describe('RowDialog: a new row on the document Headwater serves', () => {
  const servedOrders = findTable(parseOpenApi(headwaterDemoOpenApi), 'orders')!

  function create(respond: (url: string, init: RequestInit) => Promise<Response>) {
    const calls: { url: string; init: RequestInit }[] = []
    vi.stubGlobal('fetch', (url: string, init: RequestInit) => {
      calls.push({ url, init })
      return respond(url, init)
    })
    const qc = new QueryClient({ defaultOptions: { queries: { retry: false } } })
    render(
      <QueryClientProvider client={qc}>
        <AuthProvider>
          <ToastProvider>
            <RowDialog table={servedOrders} state={{ mode: 'create' }} onClose={() => {}} onDelete={() => {}} />
          </ToastProvider>
        </AuthProvider>
      </QueryClientProvider>,
    )
    return calls
  }
  const field = (name: string) => document.querySelector(`[data-field=${name}]`)!
  const input = (name: string) => screen.getByLabelText(new RegExp(`^${name}`)) as HTMLInputElement

  it('marks required fields, says which have a default, and leaves the key to the server', () => {
    create(async () => json([]))
    expect(field('customer_id').querySelector('.field-type')!.textContent).toBe('integer · required')
    expect(input('customer_id').placeholder).toBe('')
    expect(input('customer_id').getAttribute('aria-required')).toBe('true')
    expect(field('ordered_at').querySelector('.field-type')!.textContent).toBe('timestamp · required')
    expect(field('total').querySelector('.field-type')!.textContent).toBe('numeric(12, 2) · has default')
    expect(input('total').placeholder).toBe('default')
    expect(input('total').getAttribute('aria-required')).toBeNull()
    expect(field('id').querySelector('.field-type')!.textContent).toBe('integer · key · generated')
    expect(input('id').placeholder).toBe('generated')
    expect(input('note').placeholder).toBe('NULL')
  })

  it('does not send an insert that lacks a required field', async () => {
    const calls = create(async () => json([]))
    fireEvent.change(input('ordered_at'), { target: { value: '2024-01-02T03:04' } })
    fireEvent.click(screen.getByRole('button', { name: 'Insert row' }))
    expect(await screen.findByText('is required')).toBeTruthy()
    expect(input('customer_id').getAttribute('aria-invalid')).toBe('true')
    expect(calls).toHaveLength(0)
  })
})
