// Reports the shipped console's size, raw and gzipped, per file and for the first load.

import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { gzipSync } from 'node:zlib'
import { fileURLToPath } from 'node:url'

const dir = fileURLToPath(new URL('../../src/headwater/console', import.meta.url))
const html = readFileSync(join(dir, 'index.html'), 'utf8')
let total = 0
let totalGz = 0
let firstGz = 0
const rows = []
for (const name of ['index.html', ...readdirSync(join(dir, 'assets')).map((f) => `assets/${f}`)]) {
  const buf = readFileSync(join(dir, name))
  const gz = gzipSync(buf, { level: 9 }).length
  total += buf.length
  totalGz += gz
  const initial = name === 'index.html' || html.includes(name)
  if (initial) firstGz += gz
  rows.push(`${(buf.length / 1024).toFixed(1).padStart(8)} kB ${(gz / 1024).toFixed(1).padStart(7)} kB gz  ${initial ? 'first load' : 'on demand '}  ${name}`)
}
console.log(rows.join('\n'))
console.log(`total ${(total / 1024).toFixed(1)} kB, ${(totalGz / 1024).toFixed(1)} kB gzipped; first load ${(firstGz / 1024).toFixed(1)} kB gzipped`)
