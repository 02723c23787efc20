#!/usr/bin/env node
// `npm run build` (and npm's `prepare`, so `npm install` from a git checkout builds too):
// compiles what the package ships to dist/ with tsconfig.build.json, then copies the files
// the code reads at run time next to it. Incremental: a build with nothing changed takes
// ~2 s (tap's `before` runs it so the CLI the tests spawn is the code under test).
// `--clean` starts from an empty dist/ (npm pack's prepack), so no stale file is shipped.
// Plain JavaScript: it must run before anything is compiled.
import { spawnSync } from 'node:child_process'
import { chmodSync, cpSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = dirname(dirname(fileURLToPath(import.meta.url)))
const dist = join(root, 'dist')
if (process.argv.includes('--clean')) rmSync(dist, { recursive: true, force: true })

let tsc
try {
  tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
} catch {
  console.error('build: typescript is not installed; run `npm install` (it is a dev dependency)')
  process.exit(1)
}
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], {
  stdio: 'inherit',
})
if (r.status !== 0) {
  console.error(`build: tsc failed (exit ${r.status ?? r.signal})`)
  process.exit(1)
}

// What the compiled code reads beside itself (new URL('./x', import.meta.url)).
for (const rel of ['lib/db/schema.sql', 'server/admin/assets']) {
  cpSync(join(root, rel), join(dist, rel), { recursive: true })
}
chmodSync(join(dist, 'scripts/cli/main.js'), 0o755)
// The time of the last good build, which scripts/clavitor compares sources with (tsc leaves
// its .tsbuildinfo alone when nothing changed).
writeFileSync(join(dist, '.built'), new Date().toISOString() + '\n')
