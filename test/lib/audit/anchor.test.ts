// Anchors in the WORM store: written when the head moved, read back verified. `clavitor
// audit verify` as a process: test/integration/audit-verify-cli.test.ts.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openCore } from '../../../lib/core.js'
import { AUDIT_ANCHOR_P0, scanAnchors, writeAnchor } from '../../../lib/audit/anchor.js'
import { verifyChain } from '../../../lib/audit/log.js'

function tempData(t: { teardown: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cla-anchor-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

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
