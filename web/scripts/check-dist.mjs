// Builds the console into a temporary directory and compares it with the committed build in
// src/headwater/console/. Exits non-zero (and lists the differences) when they do not match,
// i.e. when web/ changed without `npm run build`, or the build is not deterministic.

import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'

const web = fileURLToPath(new URL('..', import.meta.url))
const committed = fileURLToPath(new URL('../../src/headwater/console', import.meta.url))
const fresh = mkdtempSync(join(tmpdir(), 'headwater-console-'))

function files(dir) {
  const out = new Map()
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p)
      else out.set(relative(dir, p), readFileSync(p))
    }
  }
  walk(dir)
  return out
}

try {
  execFileSync(join(web, 'node_modules/.bin/tsc'), ['-b'], { cwd: web, stdio: 'inherit' })
  execFileSync(join(web, 'node_modules/.bin/vite'), ['build', '--logLevel', 'warn'], {
    cwd: web,
    stdio: 'inherit',
    env: { ...process.env, HEADWATER_CONSOLE_OUT: fresh },
  })
  const a = files(committed)
  const b = files(fresh)
  const problems = []
  for (const [name, buf] of b) {
    if (!a.has(name)) problems.push(`missing from src/headwater/console: ${name}`)
    else if (!a.get(name).equals(buf)) problems.push(`differs: ${name}`)
  }
  for (const name of a.keys()) if (!b.has(name)) problems.push(`not produced by a fresh build: ${name}`)
  if (problems.length) {
    console.error('The committed console build does not match a fresh build of web/:')
    for (const p of problems) console.error(`  ${p}`)
    console.error('Run `npm run build` in web/ and commit src/headwater/console/.')
    process.exitCode = 1
  } else {
    console.log(`console build matches a fresh build of web/ (${b.size} files)`)
  }
} finally {
  rmSync(fresh, { recursive: true, force: true })
}
