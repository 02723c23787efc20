// A POP tells vaults how fresh it is (docs/replication.md "Freshness"): the core's signed
// checkpoint of the replication log the POP holds, on GET /api/v1/checkpoint and in the
// Clavitor-Checkpoint header of every lookup answer. A vault checks it as it would with
// only the core's public key: here with tweetnacl, not our own code.
import { join } from 'node:path'
import nacl from 'tweetnacl'
import t from 'tap'
import { ManualClock } from '../../lib/clock.js'
import {
  CHECKPOINT_DOMAIN,
  checkpointBytes,
  parseCheckpointHeader,
  type Checkpoint,
} from '../../lib/store/checkpoint.js'
import { buildPopApp } from '../../pop-agent/app.js'
import { openTestPop, randomP0, startCore, tempDir } from '../fixtures/sync.js'

/** What a vault does with a checkpoint and the core's raw public key. */
function vaultAccepts(cp: Checkpoint, corePublicKey: Buffer): boolean {
  const msg = Buffer.concat([Buffer.from(CHECKPOINT_DOMAIN, 'ascii'), checkpointBytes(cp)])
  return nacl.sign.detached.verify(msg, Buffer.from(cp.signature, 'base64'), corePublicKey)
}

t.test('the checkpoint route and header, verifiable with the core key alone', async (t) => {
  const dir = tempDir(t)
  const clock = new ManualClock()
  const core = await startCore(t, join(dir, 'core'), { checkpoints: { clock } })
  const p0 = randomP0()
  await core.addBlobs(3, [p0])
  const pop = await openTestPop(t, core, join(dir, 'pop'), 'pop-fresh')
  const app = await buildPopApp({ pop })
  t.teardown(() => app.close())

  const before = await app.inject({ url: '/api/v1/checkpoint' })
  t.equal(before.statusCode, 404, 'no verified checkpoint before the first pull')
  t.equal(before.json().error.code, 'CLA_ERR_NOT_FOUND')
  t.notOk(before.headers['clavitor-checkpoint'])

  await pop.sync.run()
  const route = await app.inject({ url: '/api/v1/checkpoint' })
  t.equal(route.statusCode, 200)
  const cp = route.json() as Checkpoint
  const head = core.store.index.head()!
  t.match(cp, {
    store_id: core.store.storeId,
    generation: core.store.generation,
    seq: head.seq,
    created_at: head.created_at,
    chain: core.store.index.chainAt(head.seq),
    time: clock.now() * 1000,
  })
  t.ok(vaultAccepts(cp, core.store.publicKey!), 'signed by the core')
  t.notOk(
    vaultAccepts({ ...cp, time: cp.time + 1 }, core.store.publicKey!),
    'a POP cannot make itself look fresher',
  )

  const hit = await app.inject({ url: `/api/v1/wl3/${p0}` })
  t.equal(hit.statusCode, 200)
  const header = hit.headers['clavitor-checkpoint'] as string
  t.same(parseCheckpointHeader(header), cp, 'the header carries the same checkpoint')
  t.ok(vaultAccepts(parseCheckpointHeader(header), core.store.publicKey!))
  const notModified = await app.inject({
    url: `/api/v1/wl3/${p0}`,
    headers: { 'if-none-match': hit.headers.etag as string },
  })
  t.equal(notModified.statusCode, 304)
  t.equal(notModified.headers['clavitor-checkpoint'], header, 'on a 304 too')
  const missing = await app.inject({ url: `/api/v1/wl3/${randomP0()}` })
  t.equal(missing.statusCode, 404)
  t.equal(missing.headers['clavitor-checkpoint'], header, 'and on a miss: "not here as of T"')
  t.equal(
    (await app.inject({ url: `/api/v1/wl3/${p0}/cla` })).headers['clavitor-checkpoint'],
    header,
  )

  // an hour later the core is idle: a pull brings a newer time for the same position
  clock.advance(3_600_000)
  await pop.sync.run()
  const later = (await app.inject({ url: '/api/v1/checkpoint' })).json() as Checkpoint
  t.equal(later.seq, cp.seq)
  t.equal(later.time, cp.time + 3_600_000_000, 'fresher by an hour')
  t.ok(vaultAccepts(later, core.store.publicKey!))
  await core.addBlobs(2, [p0])
  await pop.sync.run()
  const moved = (await app.inject({ url: '/api/v1/checkpoint' })).json() as Checkpoint
  t.equal(moved.seq, core.store.index.head()!.seq, 'new blobs: the checkpoint covers them')
  t.equal(
    parseCheckpointHeader(
      (await app.inject({ url: `/api/v1/wl3/${p0}` })).headers['clavitor-checkpoint'] as string,
    ).seq,
    moved.seq,
  )
})
