// Foreign files at the audit anchor P0 (issue 11, item 1): a store that already holds
// files a vault registered there through an older core (put here through the store
// directly, as that core did) must recover. `audit verify` skips them, alarms once each
// and still finds real tampering; the anchor writer skips them and keeps writing; v1
// anchors are reported as legacy, never trusted. Real store, real CLI.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { execa } from 'execa'
import Database from 'better-sqlite3'
import { openCore, type Core } from '../../../lib/core.js'
import { AUDIT_ANCHOR_P0, startAnchorTimer, writeAnchor } from '../../../lib/audit/anchor.js'

const CLI = new URL('../../../scripts/clavitor', import.meta.url).pathname
const env = { ...process.env, CLAVITOR_PROTECTION: 'off' }
const cli = (...args: string[]) => execa(CLI, args, { reject: false, env })

function tempData(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cla-anchor-foreign-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** A core on `dataDir`, closed once: by `close()` or at the end of the test. */
async function openOnce(
  t: { teardown: (fn: () => unknown) => void },
  dataDir: string,
): Promise<{ core: Core; close: () => Promise<void> }> {
  const core = await openCore({ dataDir, protection: 'off' })
  let closed = false
  const close = async () => {
    if (closed) return
    closed = true
    await core.close()
  }
  t.teardown(close)
  return { core, close }
}

const event = (core: Core, i: number) =>
  core.audit.append({ kind: 'admin.action', actor: 'system', outcome: 'ok', data: { i } })

const forgedV1 = (id: number) =>
  Buffer.from(
    JSON.stringify({ v: 1, type: 'clavitor.audit.anchor', id, hash: 'ab'.repeat(32), at: 1 }),
  )
const forgedV2 = (core: Core, id: number) =>
  Buffer.from(
    JSON.stringify({
      v: 2,
      type: 'clavitor.audit.anchor',
      id,
      hash: 'ab'.repeat(32),
      at: 1,
      key_id: core.store.keyId,
      sig: randomBytes(64).toString('hex'),
    }),
  )
const notJson = Buffer.from('\u0000 a WL3, not JSON')

/** 6 events with (v2) anchors after 3 and 6, then the foreign files, then `after` more events. */
async function seedWithForeign(dataDir: string, after = 0): Promise<void> {
  const core = await openCore({ dataDir, protection: 'off' })
  try {
    for (let i = 1; i <= 6; i++) {
      event(core, i)
      if (i % 3 === 0) await writeAnchor(core.db, core.store)
    }
    // what an unpatched core accepted from any paying vault at the anchor P0
    await core.store.put(AUDIT_ANCHOR_P0, forgedV2(core, 999))
    await core.store.put(AUDIT_ANCHOR_P0, notJson)
    for (let i = 1; i <= after; i++) event(core, 100 + i)
  } finally {
    await core.close()
  }
}

function alarms(dataDir: string): Array<{ reason: string; data: string }> {
  const db = new Database(join(dataDir, 'meta.db'), { readonly: true })
  try {
    return db
      .prepare("SELECT reason, data FROM events WHERE kind = 'audit.alarm' ORDER BY id")
      .all() as Array<{ reason: string; data: string }>
  } finally {
    db.close()
  }
}

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
  await close()
  const r = await cli('audit', 'verify', '--data', dataDir)
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /intact: 9 events.*4 anchors checked, 2 foreign files skipped/)
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
