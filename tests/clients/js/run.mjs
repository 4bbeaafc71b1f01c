// Runs named @supabase/postgrest-js scenarios against a server and prints one JSON object
// {scenario: result} on stdout, where a result is {data, error, count, status, statusText}
// or, for a scenario of several steps, {step: result}.
//
//   node run.mjs http://127.0.0.1:3000 [scenario ...]    (no names: every scenario, in order)
import { PostgrestClient } from '@supabase/postgrest-js'
import { scenarios } from './scenarios.mjs'

const [url, ...names] = process.argv.slice(2)
if (!url) {
  console.error('usage: node run.mjs SERVER_URL [scenario ...]')
  process.exit(2)
}
const unknown = names.filter((n) => !(n in scenarios))
if (unknown.length) {
  console.error('unknown scenarios: ' + unknown.join(', '))
  process.exit(2)
}

// No hidden retries: a 503 must show up as the 503 it is.
const client = new PostgrestClient(url, { retry: false })

const shape = (r) => ({
  data: r.data ?? null,
  error: r.error ?? null,
  count: r.count ?? null,
  status: r.status,
  statusText: r.statusText,
})

const out = {}
for (const name of names.length ? names : Object.keys(scenarios)) {
  try {
    const steps = await scenarios[name](client)
    out[name] = {}
    for (const [step, res] of Object.entries(steps)) out[name][step] = shape(await res)
  } catch (e) {
    out[name] = { thrown: String(e && e.stack ? e.stack : e) }
  }
}
process.stdout.write(JSON.stringify(out))
