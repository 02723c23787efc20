#!/usr/bin/env node
// `npm test`'s pretest: tap's test class is built from package.json "tap.plugin" into
// node_modules/@tapjs/test/test-built. After `npm ci` it holds tap's defaults (ts-node); the
// first `tap` notices and rebuilds it, but runs that whole suite with the class it had
// already loaded, so the suite's own loader (scripts/tap-ts) would be missing from the one
// run CI makes. Built here first when it is missing (`tap build`, ~10 s); nothing otherwise.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'

const require = createRequire(import.meta.url)
const built = join(
  dirname(require.resolve('@tapjs/test/package.json')),
  'test-built/dist/esm/index.js',
)
let text = ''
try {
  text = readFileSync(built, 'utf8')
} catch {
  // never built: build it
}
if (!text.includes('@clavitor/_tap-ts/import')) {
  const tap = join(dirname(require.resolve('tap/package.json')), 'dist/esm/run.mjs')
  const r = spawnSync(process.execPath, [tap, 'build'], { stdio: 'inherit' })
  if (r.status !== 0) {
    console.error(`ensure-tap-plugins: tap build failed (exit ${r.status ?? r.signal})`)
    process.exit(1)
  }
}
