// End-to-end test of the web console against a real Headwater serving the demo data.
//
//   HEADWATER_URL=http://127.0.0.1:3000 node e2e/run.mjs
//
// Drives Debian's chromium through playwright-core (no browser download). Read scenarios and
// write scenarios are separate steps; E2E_SKIP_WRITES=1 skips the write steps (and says so).
// Screenshots go to e2e/artifacts/. Optional: CHROMIUM_PATH, E2E_API_KEY or E2E_JWT (sign in
// with them instead of the anonymous role), E2E_ONLY=substring (run matching steps only).
// Ends with a line "e2e: N passed, N failed, N skipped" and exits non-zero on any failure.

import { chromium } from 'playwright-core'
import { mkdirSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import assert from 'node:assert/strict'

const BASE = (process.env.HEADWATER_URL ?? 'http://127.0.0.1:3000').replace(/\/+$/, '')
const CONSOLE = `${BASE}/-/console/`
const ARTIFACTS = fileURLToPath(new URL('./artifacts/', import.meta.url))
const SKIP_WRITES = process.env.E2E_SKIP_WRITES === '1'
const ONLY = process.env.E2E_ONLY ?? ''
const TIMEOUT = 15_000

rmSync(ARTIFACTS, { recursive: true, force: true })
mkdirSync(ARTIFACTS, { recursive: true })

// ---------- helpers ----------

function authHeaders() {
  if (process.env.E2E_JWT) return { Authorization: `Bearer ${process.env.E2E_JWT}` }
  if (process.env.E2E_API_KEY) return { apikey: process.env.E2E_API_KEY }
  return {}
}

/** Asks the server directly (not through the console), to check what the console shows. */
async function api(path, init = {}) {
  const res = await fetch(`${BASE}${path}`, {
    ...init,
    headers: { Accept: 'application/json', Prefer: 'count=exact', ...authHeaders(), ...(init.headers ?? {}) },
  })
  const text = await res.text()
  const range = res.headers.get('content-range')
  return { status: res.status, body: text ? JSON.parse(text) : null, total: range ? Number(range.split('/')[1]) : null }
}

const hashOf = (page) => decodeURIComponent(new URL(page.url()).hash)

/** Waits until the decoded URL hash contains `needle` (a string) or matches it (a RegExp). */
async function waitForHash(page, needle, what = String(needle)) {
  const arg = needle instanceof RegExp ? { re: needle.source } : { s: needle }
  await page
    .waitForFunction(({ re, s }) => {
      const h = decodeURIComponent(location.hash)
      return re ? new RegExp(re).test(h) : h.includes(s)
    }, arg, { timeout: TIMEOUT })
    .catch(() => {
      throw new Error(`URL never matched ${what}; it is ${hashOf(page)}`)
    })
}

/** The grid's rows as objects keyed by column name (from the header's data-column). */
async function gridRows(page) {
  return page.evaluate(() => {
    const cols = [...document.querySelectorAll('table.grid thead th[data-column]')].map((th) => th.getAttribute('data-column'))
    return [...document.querySelectorAll('table.grid tbody tr')].map((tr) => {
      const cells = [...tr.querySelectorAll('td')].slice(1)
      return Object.fromEntries(cols.map((c, i) => [c, cells[i]?.textContent?.replace(/\s*↗$/, '').trim() ?? '']))
    })
  })
}

async function waitForGrid(page) {
  await page.waitForSelector('table.grid tbody tr', { timeout: TIMEOUT })
  await page.waitForFunction(() => !document.querySelector('.grid-wrap.busy'), null, { timeout: TIMEOUT })
}

async function openTable(page, table, search = '') {
  await page.goto(`${CONSOLE}#/tables/${table}${search ? `?${search}` : ''}`)
  await waitForGrid(page)
}

async function rangeText(page) {
  return (await page.locator('[data-testid=range]').textContent())?.trim()
}

async function shot(page, name) {
  await page.screenshot({ path: `${ARTIFACTS}${name}.png`, fullPage: false })
}

// ---------- steps ----------

const steps = []
const step = (name, kind, fn) => steps.push({ name, kind, fn })

step('sign in (anonymous role or E2E_API_KEY/E2E_JWT) and list the tables', 'read', async (page) => {
  const wanted = ['customers', 'products', 'orders', 'order_items', 'customer_totals']
  if (process.env.E2E_API_KEY || process.env.E2E_JWT) {
    await page.goto(`${CONSOLE}#/login`)
    if (process.env.E2E_JWT) {
      await page.getByText('JWT', { exact: true }).click()
      await page.getByLabel('JSON Web Token').fill(process.env.E2E_JWT)
    } else {
      await page.locator('.login-card input[type=password]').fill(process.env.E2E_API_KEY)
    }
    await page.getByRole('button', { name: 'Sign in' }).click()
  } else {
    await page.goto(CONSOLE)
  }
  await page.waitForSelector('.cards .card', { timeout: TIMEOUT })
  const names = await page.locator('.cards .card strong').allTextContents()
  for (const t of wanted) assert.ok(names.includes(t), `table ${t} listed (got ${names.join(', ')})`)
  const sidebar = await page.locator('.table-list .tname').allTextContents()
  assert.deepEqual([...sidebar].sort(), [...names].sort(), 'sidebar lists the same tables')
  await shot(page, '01-tables')
})

step('sign-in page: key or JWT for this tab only, or the anonymous role', 'read', async (page) => {
  await page.goto(`${CONSOLE}#/login`)
  const anon = page.getByRole('button', { name: 'Continue as anonymous' })
  await page.getByText(/anonymous role/).waitFor({ timeout: TIMEOUT })
  const anonAllowed = (await api('/')).status === 200
  assert.equal(await anon.isEnabled(), anonAllowed, 'anonymous offered exactly when the server allows it')
  await page.getByText('JWT', { exact: true }).click()
  await page.getByLabel('JSON Web Token').fill('not-a-token')
  await page.getByRole('button', { name: 'Sign in' }).click()
  await page.getByText('does not look like a JWT').waitFor({ timeout: TIMEOUT })
  await shot(page, '00-sign-in')
  if (anonAllowed) {
    await anon.click()
    await page.waitForSelector('.cards .card', { timeout: TIMEOUT })
    assert.equal(await page.locator('[data-testid=principal]').textContent(), 'anonymous')
    const stored = await page.evaluate(() => ({ session: sessionStorage.getItem('headwater.console.auth'), local: localStorage.length }))
    assert.equal(stored.session, '{"kind":"anon"}', 'the choice lives in sessionStorage')
    assert.equal(stored.local, 0, 'nothing in localStorage')
  }
})

step('browse a table with server-side pagination', 'read', async (page) => {
  const { total } = await api('/orders?limit=1')
  await page.goto(CONSOLE)
  await page.locator('.table-list a').filter({ has: page.locator('.tname', { hasText: /^orders$/ }) }).click()
  await waitForGrid(page)
  assert.equal(await page.locator('table.grid tbody tr').count(), 25)
  assert.equal(await rangeText(page), `Rows 1–25 of ${total.toLocaleString('en-US')}`)
  await page.getByRole('button', { name: 'Next page' }).click()
  await waitForHash(page, 'offset=25')
  await waitForGrid(page)
  assert.equal(await rangeText(page), `Rows 26–50 of ${total.toLocaleString('en-US')}`)
  const expected = (await api('/orders?order=id.asc&limit=25&offset=25')).body.map((r) => String(r.id))
  assert.deepEqual((await gridRows(page)).map((r) => r.id), expected, 'page 2 shows the server’s rows 26–50')
  await page.getByRole('combobox', { name: /per page/i }).selectOption('50')
  await waitForHash(page, /limit=50$/, 'limit=50 from the first row')
  await waitForGrid(page)
  assert.equal(await page.locator('table.grid tbody tr').count(), 50)
  await shot(page, '02-browse')
})

step('sort by clicking a header', 'read', async (page) => {
  await openTable(page, 'orders')
  await page.locator('th[data-column=total]').click()
  await waitForHash(page, 'order=total.asc')
  await waitForGrid(page)
  await page.locator('th[data-column=total]').click()
  await waitForHash(page, 'order=total.desc')
  await waitForGrid(page)
  const shown = (await gridRows(page)).map((r) => Number(r.total))
  const top = (await api('/orders?select=total&order=total.desc&limit=25')).body.map((r) => Number(r.total))
  assert.deepEqual(shown, top, 'rows sorted by total, descending, as the server sorts them')
  assert.equal(await page.locator('th[data-column=total]').getAttribute('aria-sort'), 'descending')
  await shot(page, '03-sort')
})

step('filter with the builder (and/or), query shown and kept in the URL', 'read', async (page) => {
  await openTable(page, 'orders')
  await page.getByRole('button', { name: /^Filters/ }).click()
  const builder = page.locator('[data-testid=filter-builder]')
  await builder.getByRole('button', { name: '+ Condition' }).click()
  let cond = builder.locator('[data-testid=condition]').nth(0)
  await cond.getByLabel('Column').selectOption('status')
  await cond.getByLabel('Operator').selectOption('eq')
  await cond.getByLabel('Value').fill('paid')
  await builder.getByRole('button', { name: '+ Condition' }).click()
  cond = builder.locator('[data-testid=condition]').nth(1)
  await cond.getByLabel('Column').selectOption('total')
  await cond.getByLabel('Operator').selectOption('gt')
  await cond.getByLabel('Value').fill('500')
  const preview = await page.locator('.filters-panel [data-testid=query-preview]').textContent()
  assert.equal(preview, '/orders?status=eq.paid&total=gt.500')
  await cond.getByLabel('Value').press('Enter') // Enter applies
  await waitForHash(page, 'status=eq.paid&total=gt.500')
  await waitForGrid(page)
  const andCount = (await api('/orders?status=eq.paid&total=gt.500&limit=1')).total
  assert.ok(andCount > 0, 'the demo data has paid orders over 500')
  assert.match(await rangeText(page), new RegExp(`of ${andCount.toLocaleString('en-US')}$`))
  for (const r of await gridRows(page)) {
    assert.equal(r.status, 'paid')
    assert.ok(Number(r.total) > 500, `total ${r.total} > 500`)
  }
  assert.match(await page.locator('main > section > [data-testid=query-preview], .table-page > .query-preview code').first().textContent(), /status=eq\.paid&total=gt\.500/)
  await shot(page, '04-filter-and')

  await page.getByLabel('Combine filters with').selectOption('or')
  await page.getByRole('button', { name: 'Apply' }).click()
  await waitForHash(page, 'or=(status.eq.paid,total.gt.500)')
  await waitForGrid(page)
  const orCount = (await api('/orders?or=(status.eq.paid,total.gt.500)&limit=1')).total
  assert.match(await rangeText(page), new RegExp(`of ${orCount.toLocaleString('en-US')}$`))
  assert.ok(orCount > andCount)

  // The URL is the view: reloading (or sharing it) shows the same rows and the same builder.
  await page.reload()
  await waitForGrid(page)
  assert.match(await rangeText(page), new RegExp(`of ${orCount.toLocaleString('en-US')}$`))
  assert.equal(await page.getByLabel('Combine filters with').inputValue(), 'or')
  assert.equal(await page.locator('[data-testid=condition]').count(), 2)
  await shot(page, '05-filter-or-after-reload')
})

step('follow a foreign key to the related row, and back to the related rows', 'read', async (page) => {
  await openTable(page, 'orders', 'limit=5')
  assert.equal(await page.locator('th[data-column=id]').getAttribute('aria-sort'), 'ascending', 'ordered by the key by default')
  const first = (await gridRows(page))[0]
  await page.locator('table.grid tbody tr').first().locator('a.fk').first().click()
  await waitForHash(page, `#/tables/customers?id=eq.${first.customer_id}&`)
  await waitForGrid(page)
  const customers = await gridRows(page)
  assert.equal(customers.length, 1)
  assert.equal(customers[0].id, first.customer_id, 'the order’s customer')
  await shot(page, '06-follow-fk')

  // Keyboard: focus a cell, Shift+Enter opens the row; its "Related" section links the orders.
  await page.locator('table.grid tbody tr td').nth(1).click()
  await page.keyboard.press('Shift+Enter')
  const dialog = page.locator('dialog.row-dialog')
  await dialog.waitFor({ state: 'visible', timeout: TIMEOUT })
  await dialog.getByRole('link', { name: `orders where customer_id = ${first.customer_id}` }).click()
  await waitForHash(page, `/tables/orders?customer_id=eq.${first.customer_id}&`)
  await waitForGrid(page)
  const orders = await gridRows(page)
  const expected = (await api(`/orders?customer_id=eq.${first.customer_id}&limit=1`)).total
  assert.equal(orders.length, Math.min(25, expected))
  for (const o of orders) assert.equal(o.customer_id, first.customer_id)
  await shot(page, '07-follow-reverse')
})

step('keyboard navigation in the grid', 'read', async (page) => {
  await openTable(page, 'products', 'limit=10&order=id.asc')
  await page.locator('th[data-column=id]').focus()
  await page.keyboard.press('ArrowDown')
  await page.keyboard.press('ArrowDown')
  await page.keyboard.press('ArrowRight')
  const active = await page.evaluate(() => document.activeElement?.getAttribute('data-cell'))
  assert.equal(active, '1:2', 'arrows move the focused cell')
  await page.keyboard.press('Enter')
  const dialog = page.locator('dialog.row-dialog')
  await dialog.waitFor({ state: 'visible', timeout: TIMEOUT })
  const rows = await gridRows(page)
  assert.match(await dialog.locator('h2').textContent(), new RegExp(`products · ${rows[1].id}$`))
  await page.keyboard.press('Escape')
  await dialog.waitFor({ state: 'hidden', timeout: TIMEOUT })
})

step('view columns show their real types', 'read', async (page) => {
  const doc = (await api('/', { headers: { Accept: 'application/openapi+json' } })).body
  const props = doc.components.schemas.customer_totals.properties
  await openTable(page, 'customer_totals', 'limit=5')
  for (const [name, prop] of Object.entries(props)) {
    const shown = (await page.locator(`th[data-column=${name}] .th-type`).textContent()).trim()
    assert.equal(shown, prop['x-db-type'], `${name}'s type`)
    assert.ok(!/nulltype|^any$|^json$/.test(shown), `${name} has a real type (${shown})`)
  }
})

step('phone width: the layout adapts and the table menu opens', 'read', async (page) => {
  await page.setViewportSize({ width: 390, height: 844 })
  await openTable(page, 'customers')
  const sidebarBox = await page.locator('#sidebar').boundingBox()
  assert.ok(!sidebarBox || sidebarBox.x + sidebarBox.width <= 1, 'sidebar hidden off-screen at phone width')
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth)
  assert.ok(overflow <= 0, `no page-level horizontal scroll (overflow ${overflow}px)`)
  await shot(page, '08-phone-table')
  await page.getByRole('button', { name: 'Tables menu' }).click()
  await page.waitForTimeout(300)
  const opened = await page.locator('#sidebar').boundingBox()
  assert.ok(opened && opened.x >= 0, 'sidebar slides in')
  await shot(page, '09-phone-menu')
  await page.setViewportSize({ width: 1280, height: 800 })
})

step('operations page draws live charts from /-/stats', 'read', async (page) => {
  const stats = (await api('/-/stats')).body
  await page.goto(`${CONSOLE}#/ops`)
  await page.waitForSelector('.panels', { timeout: TIMEOUT })
  // Rates need two samples; wait for a few refreshes.
  await page.waitForFunction(() => {
    const v = document.querySelector('[data-testid=panel] .panel-value')?.textContent ?? ''
    return v !== '' && v !== '–'
  }, null, { timeout: TIMEOUT })
  await page.waitForTimeout(4500)
  const charts = await page.locator('[data-available=true] .uplot canvas').count()
  assert.ok(charts >= 4, `at least requests/s, latency, error rate and pool charts (${charts} canvases)`)
  const drawn = await page.evaluate(() =>
    [...document.querySelectorAll('[data-available=true] .uplot canvas')].some((c) => {
      const ctx = c.getContext('2d')
      const d = ctx.getImageData(0, 0, c.width, c.height).data
      for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true
      return false
    }),
  )
  assert.ok(drawn, 'the charts drew something')
  // What the server does not use says so; "not reported" is only for an older server's missing fields.
  assert.equal(await page.locator('[data-testid=not-available]').count(), 0, 'every panel is reported by this server')
  const rateLimit = await page.locator('[data-panel=rate-limit]').textContent()
  if (stats.rate_limit_rejections === null) assert.match(rateLimit, /No rate limit configured/)
  else assert.match(rateLimit, /in total/)
  const breakers = await page.locator('[data-panel=breakers]').textContent()
  const deps = Object.entries(stats.breakers ?? {})
  if (deps.length === 0) assert.match(breakers, /No circuit breakers/)
  for (const [dep] of deps) assert.match(breakers, new RegExp(`${dep}: `), `breaker ${dep} shown`)
  if (stats.cache && stats.cache.hit + stats.cache.miss > 0) {
    assert.match(await page.locator('[data-panel=cache]').textContent(), /lifetime \d/, 'the lifetime hit ratio from the server’s hit/miss counters')
  }
  // The error rate is the count it shows over the requests it shows (5xx; 4xx apart).
  const errorPanel = page.locator('[data-panel=error-rate]')
  const note = await errorPanel.locator('p.muted').textContent()
  const m = /^([\d,]+) server errors? in ([\d,]+) requests?/.exec(note)
  assert.ok(m, `the error rate says what it counts (${note})`)
  const [errors, requests] = [Number(m[1].replaceAll(',', '')), Number(m[2].replaceAll(',', ''))]
  const shown = Number((await errorPanel.locator('.panel-value').textContent()).replace('%', ''))
  assert.ok(Math.abs(shown - (requests ? (100 * errors) / requests : 0)) < 0.01, `rate ${shown}% = ${errors} / ${requests}`)
  await shot(page, '10-operations')
})

// ---- writes ----

const stamp = Date.now().toString(36)

step('edit a row and see it persisted after reload', 'write', async (page) => {
  await openTable(page, 'products', 'id=eq.1')
  await page.locator('table.grid tbody tr').first().dblclick()
  const dialog = page.locator('dialog.row-dialog')
  await dialog.waitFor({ state: 'visible', timeout: TIMEOUT })
  const name = `E2E edited ${stamp}`
  await dialog.getByLabel(/^name/).fill(name)
  await dialog.getByRole('button', { name: 'Save' }).click()
  await dialog.waitFor({ state: 'hidden', timeout: TIMEOUT })
  await page.locator('[data-testid=toast]', { hasText: 'Saved' }).waitFor({ timeout: TIMEOUT })
  assert.equal((await gridRows(page))[0].name, name)
  await page.reload()
  await waitForGrid(page)
  assert.equal((await gridRows(page))[0].name, name, 'still there after a reload')
  assert.equal((await api('/products?id=eq.1&select=name')).body[0].name, name, 'and on the server')
  await shot(page, '11-edit-persisted')
})

step('validation errors are shown on the field (client and server)', 'write', async (page) => {
  await openTable(page, 'products', 'id=eq.2')
  await page.locator('table.grid tbody tr').first().dblclick()
  const dialog = page.locator('dialog.row-dialog')
  await dialog.waitFor({ state: 'visible', timeout: TIMEOUT })
  const price = dialog.locator('[data-field=price]')
  await dialog.getByLabel(/^price/).fill('abc')
  await dialog.getByRole('button', { name: 'Save' }).click()
  await price.locator('.field-error').waitFor({ timeout: TIMEOUT })
  assert.equal(await price.locator('.field-error').textContent(), 'must be a number')
  assert.equal(await dialog.getByLabel(/^price/).getAttribute('aria-invalid'), 'true')

  // The server's own validation: a CHECK (price >= 0) and a UNIQUE sku.
  const other = (await api('/products?id=eq.3&select=sku')).body[0].sku
  await dialog.getByLabel(/^price/).fill('-5')
  await dialog.getByLabel(/^sku/).fill(other)
  await dialog.getByRole('button', { name: 'Save' }).click()
  await dialog.locator('[data-testid=form-error]').waitFor({ timeout: TIMEOUT })
  await dialog.locator('.field.has-error').first().waitFor({ timeout: TIMEOUT })
  const fieldsWithErrors = await dialog.locator('.field.has-error').evaluateAll((els) => els.map((e) => e.getAttribute('data-field')))
  assert.ok(fieldsWithErrors.includes('price') || fieldsWithErrors.includes('sku'), `a server error lands on its field (got ${fieldsWithErrors})`)
  await shot(page, '12-validation-error')
  // Rolled back: the grid still shows the server's row.
  await page.keyboard.press('Escape')
  const row = (await api('/products?id=eq.2')).body[0]
  assert.equal((await gridRows(page))[0].sku, row.sku, 'the optimistic change was rolled back')
})

step('insert a row, then delete it with confirmation', 'write', async (page) => {
  const sku = `E2E-${stamp}`
  await openTable(page, 'products', 'order=id.desc')
  await page.getByRole('button', { name: '+ Insert row' }).click()
  const dialog = page.locator('dialog.row-dialog')
  await dialog.waitFor({ state: 'visible', timeout: TIMEOUT })
  // NOT NULL without a default: required, no "default" hint; the key is the server's to give.
  assert.match(await dialog.locator('[data-field=sku] .field-type').textContent(), /· required$/)
  assert.equal(await dialog.getByLabel(/^sku/).getAttribute('placeholder'), '')
  assert.equal(await dialog.getByLabel(/^id/).getAttribute('placeholder'), 'generated')
  await dialog.getByRole('button', { name: 'Insert row' }).click()
  await dialog.locator('[data-field=sku] .field-error').waitFor({ timeout: TIMEOUT })
  assert.equal(await dialog.locator('[data-field=sku] .field-error').textContent(), 'is required')
  await dialog.getByLabel(/^name/).fill(`E2E product ${stamp}`)
  await dialog.getByLabel(/^sku/).fill(sku)
  await dialog.getByLabel(/^price/).fill('12.50')
  await dialog.getByLabel(/^released_on/).fill('2024-02-29')
  await dialog.getByLabel(/^attributes/).fill('{"colour": "teal"}')
  await dialog.getByRole('button', { name: 'Insert row' }).click()
  await dialog.waitFor({ state: 'hidden', timeout: TIMEOUT })
  const created = (await api(`/products?sku=eq.${sku}`)).body
  assert.equal(created.length, 1, 'inserted on the server')
  assert.equal(Number(created[0].price), 12.5)

  await openTable(page, 'products', `sku=eq.${sku}`)
  await page.locator('table.grid tbody tr').first().getByRole('button', { name: /^Delete row/ }).click()
  const confirm = page.locator('dialog.confirm')
  await confirm.waitFor({ state: 'visible', timeout: TIMEOUT })
  await shot(page, '13-delete-confirm')
  await confirm.getByRole('button', { name: 'Cancel' }).click()
  await confirm.waitFor({ state: 'hidden', timeout: TIMEOUT })
  assert.equal((await api(`/products?sku=eq.${sku}`)).body.length, 1, 'cancel keeps the row')

  await page.locator('table.grid tbody tr').first().getByRole('button', { name: /^Delete row/ }).click()
  await confirm.waitFor({ state: 'visible', timeout: TIMEOUT })
  await confirm.getByRole('button', { name: 'Delete' }).click()
  await page.getByText('No rows match these filters').waitFor({ timeout: TIMEOUT })
  await page.reload()
  await page.getByText('No rows match these filters').waitFor({ timeout: TIMEOUT })
  assert.equal((await api(`/products?sku=eq.${sku}`)).body.length, 0, 'deleted on the server')
  await shot(page, '14-deleted')
})

// ---------- runner ----------

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
})
const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: 'light' })
context.setDefaultTimeout(TIMEOUT)
let passed = 0
let failed = 0
let skipped = 0
const consoleErrors = []
try {
  for (const s of steps) {
    if (ONLY && !s.name.includes(ONLY)) continue
    if (s.kind === 'write' && SKIP_WRITES) {
      console.log(`SKIP  ${s.name} (E2E_SKIP_WRITES=1: write steps skipped)`)
      skipped++
      continue
    }
    const page = await context.newPage()
    page.on('pageerror', (err) => consoleErrors.push(`${s.name}: ${err.message}`))
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) consoleErrors.push(`${s.name}: ${msg.text()}`)
    })
    const t0 = Date.now()
    try {
      await s.fn(page)
      console.log(`PASS  ${s.name} (${Date.now() - t0} ms)`)
      passed++
    } catch (err) {
      failed++
      console.log(`FAIL  ${s.name}\n      ${String(err?.stack ?? err).split('\n').slice(0, 6).join('\n      ')}`)
      const file = `FAILED-${s.name.replace(/[^a-z0-9]+/gi, '-').slice(0, 60)}.png`
      await page.screenshot({ path: `${ARTIFACTS}${file}` }).catch(() => {})
    } finally {
      await page.close()
    }
  }
} finally {
  await browser.close()
}
if (consoleErrors.length) {
  console.log(`browser errors:\n  ${consoleErrors.join('\n  ')}`)
}
if (SKIP_WRITES) console.log('E2E_SKIP_WRITES=1: the write steps (edit, validation, insert/delete) did not run')
console.log(`screenshots: ${ARTIFACTS}`)
console.log(`e2e: ${passed} passed, ${failed} failed, ${skipped} skipped`)
process.exitCode = failed > 0 ? 1 : 0
