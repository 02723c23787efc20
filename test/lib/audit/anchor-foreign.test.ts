// Foreign files at the audit anchor P0 (issue 11, item 1): a store that already holds
// files a vault registered there through an older core (put here through the store
// directly, as that core did) must recover: the anchor writer and its timer skip them,
// alarm once each and keep writing. `audit verify` on such a store, as a process:
// test/integration/audit-anchor-foreign-cli.test.ts.
import t from 'tap'
import { startAnchorTimer, writeAnchor, AUDIT_ANCHOR_P0 } from '../../../lib/audit/anchor.js'
import { verifyAuditTrail } from '../../../lib/audit/verify-trail.js'
import { alarms, event, openOnce, seedWithForeign, tempData } from '../../fixtures/anchors.js'

t.test('the anchor writer skips a foreign newest file, alarms once, keeps writing', async (t) => {
  const dataDir = tempData(t)
  await seedWithForeign(dataDir)
  const { core, close } = await openOnce(t, dataDir)
  const told: string[] = []
  const onAlarm = (files: Array<{ file: string }>) => told.push(...files.map((f) => f.file))
  const b = await writeAnchor(core.db, core.store, { onAlarm })
  t.ok(b, 'a new anchor is written past the foreign files')
  t.equal(told.length, 2, 'both foreign files reported')
  t.equal(alarms(dataDir).length, 2)
  t.match(JSON.parse(alarms(dataDir)[0]!.data), { found_by: 'anchor-writer' })
  t.equal(core.audit.head().id, 8, 'the alarm rows are in the chain')
  const anchored = JSON.parse((await core.store.readPayload(b!)).toString('utf8'))
  t.match(anchored, { v: 2, id: 8 }, 'the new anchor covers the alarm rows')
  t.equal(await writeAnchor(core.db, core.store, { onAlarm }), undefined, 'head unchanged')
  event(core, 7)
  t.ok(await writeAnchor(core.db, core.store, { onAlarm }), 'and the next event is anchored')
  t.equal(told.length, 2, 'no second alarm')
  const r = verifyAuditTrail(core.db, dataDir, core.store)
  t.match(r, { ok: true, count: 9, anchors: 4 }, 'the chain verifies through the new anchors')
  t.equal(r.skipped.length, 2, 'the foreign files skipped')
  t.equal(alarms(dataDir).length, 2, 'no new alarm for files already reported')
  await close()
})

t.test('the anchor timer survives a foreign file and writes anchors again', async (t) => {
  const dataDir = tempData(t)
  await seedWithForeign(dataDir, 1)
  const { core } = await openOnce(t, dataDir)
  const before = core.store.versions(AUDIT_ANCHOR_P0).length
  // the timer's first tick: resolves on the anchor it writes, rejects on any error. The
  // timer is unref'd (it never holds a process open), so this test holds the loop open.
  const keepAlive = setInterval(() => {}, 1000)
  t.teardown(() => clearInterval(keepAlive))
  const wrote = new Promise<void>((resolve, reject) => {
    const stop = startAnchorTimer(core.db, core.store, {
      intervalMs: 5,
      onError: (err) => (stop(), reject(err)),
      onAlarm: () => {
        const poll = () => {
          if (core.store.versions(AUDIT_ANCHOR_P0).length > before) {
            stop()
            resolve()
          } else setTimeout(poll, 5)
        }
        poll()
      },
    })
  })
  await wrote
  const latest = core.store.latest(AUDIT_ANCHOR_P0)!
  const payload = JSON.parse((await core.store.readPayload(latest)).toString('utf8'))
  t.match(payload, { v: 2, id: core.audit.head().id }, 'the newest file is a trusted anchor')
})
