// Foreign files at the audit anchor P0 (issue 11, item 1), `clavitor audit verify` as a
// process: it skips them, alarms once each and still finds real tampering; after the
// anchor writer skipped them the chain still verifies; v1 anchors are reported as legacy,
// never trusted. Real store, real CLI. (The writer and timer in-process:
// test/lib/audit/anchor-foreign.test.ts.)
import t from 'tap'
import { join } from 'node:path'
import { execa } from 'execa'
import Database from 'better-sqlite3'
import { AUDIT_ANCHOR_P0, writeAnchor } from '../../lib/audit/anchor.js'
import {
  alarms,
  event,
  forgedV1,
  openOnce,
  seedWithForeign,
  tempData,
} from '../fixtures/anchors.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const env = { ...process.env, CLAVITOR_PROTECTION: 'off' }
const cli = (...args: string[]) => execa(CLI, args, { reject: false, env })

t.test('audit verify skips foreign files at the anchor P0, alarms once each, passes', async (t) => {
  const dataDir = tempData(t)
  await seedWithForeign(dataDir)
  const r = await cli('audit', 'verify', '--data', dataDir)
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /intact: 6 events.*2 anchors checked, 2 foreign files skipped/)
  t.match(
    r.stderr,
    /warning: skipped 00\/0{64}\/\S+\.cla: no anchor of ours \(v2 anchor whose statement does not verify/,
  )
  t.match(r.stderr, /warning: skipped \S+: no anchor of ours \(payload is not JSON\)/)
  const a = alarms(dataDir)
  t.equal(a.length, 2, 'one alarm row per foreign file')
  t.same(
    a.map((x) => x.reason),
    ['anchor_foreign', 'anchor_foreign'],
  )
  t.match(JSON.parse(a[0]!.data), { file: /^00\/0{64}\//, found_by: 'audit-verify' })

  const j = await cli('audit', 'verify', '--data', dataDir, '--json')
  t.equal(j.exitCode, 0, j.stderr)
  const out = JSON.parse(j.stdout)
  t.match(out, { ok: true, count: 8, anchors: 2, legacy: { count: 0, disagree: [] } })
  t.equal(out.skipped.length, 2)
  t.equal(alarms(dataDir).length, 2, 'a second run raises no new alarm')
})

t.test('audit verify still finds deleted trailing rows with foreign files present', async (t) => {
  const dataDir = tempData(t)
  await seedWithForeign(dataDir)
  const db = new Database(join(dataDir, 'meta.db'))
  db.exec('DELETE FROM events WHERE id >= 5')
  db.close()
  const r = await cli('audit', 'verify', '--data', dataDir)
  t.equal(r.exitCode, 1)
  t.match(
    r.stderr,
    /CLA_ERR_AUDIT_CHAIN_BROKEN: audit chain broken at event #5: anchor names row 6/,
  )
})

t.test('audit verify after the anchor writer skipped foreign files: intact', async (t) => {
  const dataDir = tempData(t)
  await seedWithForeign(dataDir)
  const { core, close } = await openOnce(t, dataDir)
  t.ok(await writeAnchor(core.db, core.store))
  event(core, 7)
  t.ok(await writeAnchor(core.db, core.store))
  await close()
  const r = await cli('audit', 'verify', '--data', dataDir)
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /intact: 9 events.*4 anchors checked, 2 foreign files skipped/)
})

t.test('v1 anchors of an upgraded store are legacy: reported, not trusted', async (t) => {
  const dataDir = tempData(t)
  const { core, close } = await openOnce(t, dataDir)
  for (let i = 1; i <= 3; i++) event(core, i)
  const head = core.audit.head()
  // what the v1 writer wrote, and a v1-shaped forgery a vault registered
  const v1 = { v: 1, type: 'clavitor.audit.anchor', id: head.id, hash: head.hash, at: 1 }
  await core.store.put(AUDIT_ANCHOR_P0, Buffer.from(JSON.stringify(v1)))
  await core.store.put(AUDIT_ANCHOR_P0, forgedV1(999))
  await close()

  let r = await cli('audit', 'verify', '--data', dataDir, '--json')
  t.equal(r.exitCode, 0, r.stderr)
  t.match(JSON.parse(r.stdout), {
    ok: true,
    anchors: 0,
    legacy: {
      count: 2,
      disagree: [{ id: 999, reason: /names row 999, which the log does not hold/ }],
    },
    skipped: [],
  })
  r = await cli('audit', 'verify', '--data', dataDir)
  t.match(r.stdout, /0 anchors checked, 2 legacy anchors not trusted/)
  t.match(r.stderr, /legacy \(v1\) anchor \S+ names row 999/)
  t.equal(alarms(dataDir).length, 0, 'legacy anchors raise no alarm rows')

  // the first anchor after the upgrade covers the whole chain, even with the head unchanged
  const again = await openOnce(t, dataDir)
  t.ok(await writeAnchor(again.core.db, again.core.store), 'a v2 anchor is written over the v1 one')
  await again.close()
  r = await cli('audit', 'verify', '--data', dataDir)
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /intact: 3 events.*1 anchors checked, 2 legacy anchors not trusted/)
})
