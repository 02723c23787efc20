// The API reference (docs/reference, TypeDoc over the package's entry points) is complete
// and current: TypeDoc runs with its validation warnings as errors (every export
// documented, no broken link, nothing reachable that is not exported), into a temporary
// folder, and the result must equal the committed pages. Regenerate with `npm run docs:api`.
// (typedoc.json skips TypeScript's type check, which `tsc --noEmit` does: 22 -> 10 s of CPU;
// the order TypeDoc prints a union's members in depends on it, so both runs use the file.)
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, relative } from 'node:path'
import t from 'tap'
import { childEnv } from '../fixtures/child-env.js'

const root = new URL('../../', import.meta.url).pathname
const committed = join(root, 'docs', 'reference')

function files(dir: string): Map<string, string> {
  const out = new Map<string, string>()
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name)
      if (statSync(p).isDirectory()) walk(p)
      else out.set(relative(dir, p), readFileSync(p, 'utf8'))
    }
  }
  walk(dir)
  return out
}

t.test('every export documented; docs/reference is what TypeDoc makes now', async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'clavitor-reference-'))
  t.teardown(() => rmSync(out, { recursive: true, force: true }))
  const r = spawnSync(
    process.execPath,
    [
      join(root, 'node_modules', 'typedoc', 'bin', 'typedoc'),
      '--out',
      out,
      '--treatValidationWarningsAsErrors',
      '--logLevel',
      'Warn',
    ],
    { cwd: root, encoding: 'utf8', env: childEnv() },
  )
  const log = `${r.stdout}${r.stderr}`.trim()
  t.equal(
    r.status,
    0,
    `typedoc succeeds with warnings as errors${log ? `:\n${log.slice(0, 4000)}` : ''}`,
  )
  t.notMatch(log, /does not have any documentation/, 'no undocumented export')
  const want = files(out)
  const have = files(committed)
  t.same([...have.keys()].sort(), [...want.keys()].sort(), 'the same pages (npm run docs:api)')
  const stale = [...want].filter(([k, v]) => have.get(k) !== v).map(([k]) => k)
  t.same(stale, [], 'every page current (npm run docs:api)')
})
