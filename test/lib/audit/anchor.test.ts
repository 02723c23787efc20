// Anchors in the WORM store, and `clavitor audit verify` end to end (real store, real CLI).
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import Database from 'better-sqlite3'
import { openCore } from '../../../lib/core.js'
import { AUDIT_ANCHOR_P0, scanAnchors, writeAnchor } from '../../../lib/audit/anchor.js'
import { verifyChain } from '../../../lib/audit/log.js'

const CLI = new URL('../../../scripts/clavitor', import.meta.url).pathname

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

t.test('anchors are written only when the head moved, and read back verified', async (t) => {
  const dataDir = tempData(t)
  const core = await openCore({ dataDir, protection: 'off' })
  t.teardown(() => core.close())
  t.equal(await writeAnchor(core.db, core.store), undefined, 'nothing to anchor in an empty log')
  core.audit.append({ kind: 'admin.action', actor: 'a', outcome: 'ok' })
  const b = await writeAnchor(core.db, core.store)
  t.equal(b?.p0, AUDIT_ANCHOR_P0)
  t.equal(await writeAnchor(core.db, core.store), undefined, 'head unchanged')
  core.audit.append({ kind: 'admin.action', actor: 'a', outcome: 'ok' })
  await writeAnchor(core.db, core.store)
  const scan = scanAnchors(dataDir, core.store)
  t.same(
    scan.trusted.map((a) => a.id),
    [1, 2],
  )
  t.same(scan.legacy, [])
  t.same(scan.skipped, [])
  t.equal(verifyChain(core.db, { anchors: scan.trusted }).ok, true)
  const payload = JSON.parse((await core.store.readPayload(b!)).toString('utf8'))
  t.match(payload, {
    v: 2,
    type: 'clavitor.audit.anchor',
    id: 1,
    key_id: core.store.keyId,
    sig: /^[0-9a-f]{128}$/,
  })
})

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
    for (let i = 0; i < 8; i++) core.audit.append({ kind: 'admin.action', actor: 'x', outcome: 'ok' })
    t.equal(verifyChain(core.db).ok, true, 'the table alone looks fine')
    await core.close()
    const r = await verify(dataDir)
    t.equal(r.exitCode, 1)
    t.match(r.stderr, /broken at event #3: row 3 hash differs from the anchored hash/)
  },
)
