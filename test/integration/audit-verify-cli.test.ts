// `clavitor audit verify` end to end (real store, real CLI): an intact chain exits 0; an
// edited, deleted or rewritten row is named; on a POP the core's anchors it holds are
// counted, never applied to the POP's own log (issue 13, item 5). The anchors and the
// trail in-process: test/lib/audit/anchor.test.ts, verify-trail-pop.test.ts.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import Database from 'better-sqlite3'
import { openCore } from '../../lib/core.js'
import { appendEvent, verifyChain } from '../../lib/audit/log.js'
import { writeAnchor } from '../../lib/audit/anchor.js'
import { openTestPop, startCore, tempDir } from '../fixtures/sync.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname

function tempData(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cla-anchor-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

async function seed(dataDir: string, n: number, anchorEvery = 0): Promise<void> {
  const core = await openCore({ dataDir, protection: 'off' })
  try {
    for (let i = 1; i <= n; i++) {
      core.audit.append({ kind: 'admin.action', actor: 'system', outcome: 'ok', data: { i } })
      if (anchorEvery && i % anchorEvery === 0) await writeAnchor(core.db, core.store)
    }
  } finally {
    await core.close()
  }
}

const env = { ...process.env, CLAVITOR_PROTECTION: 'off' }
const verify = (dataDir: string) =>
  execa(CLI, ['audit', 'verify', '--data', dataDir], { reject: false, env })

t.test('audit verify: intact chain exits 0', async (t) => {
  const dataDir = tempData(t)
  await seed(dataDir, 6, 3)
  const r = await verify(dataDir)
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /intact: 6 events.*2 anchors checked/)
  const j = await execa(CLI, ['audit', 'verify', '--data', dataDir, '--json'], { env })
  t.match(JSON.parse(j.stdout), { ok: true, count: 6, anchors: 2 })
})

const tamper = async (t: { teardown: (fn: () => void) => void }, sql: string) => {
  const dataDir = tempData(t)
  await seed(dataDir, 6, 3)
  const db = new Database(join(dataDir, 'meta.db'))
  db.exec(sql)
  db.close()
  return verify(dataDir)
}

t.test('audit verify names an edited row', async (t) => {
  const r = await tamper(t, "UPDATE events SET outcome = 'error' WHERE id = 2")
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /CLA_ERR_AUDIT_CHAIN_BROKEN: audit chain broken at event #2: .*edited/)
})

t.test('audit verify names a deleted row', async (t) => {
  const r = await tamper(t, 'DELETE FROM events WHERE id = 4')
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /broken at event #5: row 4 is missing/)
})

t.test('audit verify finds deleted trailing rows through the anchors', async (t) => {
  const r = await tamper(t, 'DELETE FROM events WHERE id >= 5')
  t.equal(r.exitCode, 1)
  t.match(r.stderr, /broken at event #5: anchor names row 6/)
})

t.test(
  'audit verify finds a rewritten table (and a wiped blobs index does not hide anchors)',
  async (t) => {
    const dataDir = tempData(t)
    await seed(dataDir, 6, 3)
    const db = new Database(join(dataDir, 'meta.db'))
    db.exec('DELETE FROM events; DELETE FROM blobs')
    db.close()
    // the attacker writes a fresh, internally valid chain
    const core = await openCore({ dataDir, protection: 'off' })
    for (let i = 0; i < 8; i++)
      core.audit.append({ kind: 'admin.action', actor: 'x', outcome: 'ok' })
    t.equal(verifyChain(core.db).ok, true, 'the table alone looks fine')
    await core.close()
    const r = await verify(dataDir)
    t.equal(r.exitCode, 1)
    t.match(r.stderr, /broken at event #3: row 3 hash differs from the anchored hash/)
  },
)

t.test("audit verify on a POP: intact, the core's anchors only counted", async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  for (let i = 0; i < 5; i++)
    appendEvent(core.store.db, { kind: 'admin.action', actor: 'system', outcome: 'ok' })
  t.ok(await writeAnchor(core.store.db, core.store), 'the core wrote an anchor')
  await core.addBlobs(3)
  const popDir = join(dir, 'pop')
  const pop = await openTestPop(t, core, popDir, 'pop-v')
  await pop.sync.run()
  await pop.close()

  const cli = await execa(CLI, ['audit', 'verify', '--data', popDir], {
    reject: false,
    env: { ...process.env, CLAVITOR_PROTECTION: 'off' },
  })
  t.equal(cli.exitCode, 0, cli.stderr)
  t.match(cli.stdout, /audit chain intact: .*a POP: 1 anchors of the core's log held/)
})
