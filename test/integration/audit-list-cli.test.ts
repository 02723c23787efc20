// `clavitor audit list --limit` goes through the library's own check of paging numbers
// (lib/audit/log.ts listEvents): the same CLA_ERR_INVALID_INPUT (exit 2) as every caller.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { openCore } from '../../lib/core.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const env = { ...process.env, CLAVITOR_PROTECTION: 'off' }

t.test('audit list: a limit that is not a whole number ≥ 1 is CLA_ERR_INVALID_INPUT', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'cla-audit-list-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const core = await openCore({ dataDir, protection: 'off' })
  for (let i = 0; i < 3; i++)
    core.audit.append({ kind: 'admin.action', actor: 'system', outcome: 'ok', data: { i } })
  await core.close()
  const list = (...extra: string[]) =>
    execa(CLI, ['audit', 'list', '--data', dataDir, '--json', ...extra], { reject: false, env })
  for (const bad of ['ten', '1.5', '0', '-2']) {
    const r = await list('--limit', bad)
    t.equal(r.exitCode, 2, `--limit ${bad}: exit 2`)
    t.match(r.stderr, /clavitor: CLA_ERR_INVALID_INPUT: audit events: limit must be a whole number/)
  }
  const ok = await list('--limit', '2')
  t.equal(ok.exitCode, 0, ok.stderr)
  t.equal((JSON.parse(ok.stdout) as unknown[]).length, 2)
})
