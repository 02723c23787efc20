// Regression (issue 13, item 5): `clavitor audit verify` failed on every POP, even an
// untouched one: the core's anchors, replicated into the POP's store, were checked
// against the POP's own audit log. The CLI on a POP: test/integration/audit-verify-cli.test.ts.
import t from 'tap'
import { join } from 'node:path'
import { appendEvent } from '../../../lib/audit/log.js'
import { AUDIT_ANCHOR_P0, writeAnchor } from '../../../lib/audit/anchor.js'
import { verifyAuditTrail } from '../../../lib/audit/verify-trail.js'
import { openTestPop, startCore, tempDir } from '../../fixtures/sync.js'

t.test("a POP's own log verifies; the core's anchors it holds are not applied to it", async (t) => {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  for (let i = 0; i < 5; i++)
    appendEvent(core.store.db, { kind: 'admin.action', actor: 'system', outcome: 'ok' })
  t.ok(await writeAnchor(core.store.db, core.store), 'the core wrote an anchor')
  await core.addBlobs(3)
  const popDir = join(dir, 'pop')
  const pop = await openTestPop(t, core, popDir, 'pop-v')
  await pop.sync.run()
  t.ok(pop.store.latest(AUDIT_ANCHOR_P0), 'the anchor replicated with the blobs')

  const r = verifyAuditTrail(pop.db, popDir, pop.store)
  t.equal(r.ok, true, r.ok ? 'intact' : r.reason)
  t.equal(r.anchors, 0, 'no anchor checked against the POP log')
  t.equal(r.coreAnchors, 1, "the core's anchor is counted")
  t.same(r.skipped, [], 'and not taken for a foreign file')
})
