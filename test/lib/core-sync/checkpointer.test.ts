// lib/core-sync/checkpointer.ts: one signature per position within the refresh window, and
// a head re-signed on its timer while nothing asks (a caught-up POP then gets a recent
// time), until stop(). Real keys, a real store; a manual clock moves time.
import { join } from 'node:path'
import t from 'tap'
import { ManualClock } from '../../../lib/clock.js'
import { Checkpointer } from '../../../lib/core-sync/checkpointer.js'
import { verifyCheckpoint } from '../../../lib/store/checkpoint.js'
import { BlobStore } from '../../../lib/store/index.js'

t.test('cached within the window, re-signed after it and on the idle timer', async (t) => {
  const store = await BlobStore.init({ dataDir: join(t.testdir(), 's'), protection: 'off' })
  t.teardown(() => store.close())
  const info = await store.put('ab'.repeat(16), Buffer.from('wl3'))
  let signed = 0
  const counting = {
    db: store.db,
    storeId: store.storeId,
    generation: store.generation,
    signStatement: (d: string, b: Buffer) => (signed++, store.signStatement(d, b)),
  }
  const clock = new ManualClock(1_800_000_000_000)
  const cp = new Checkpointer(counting, { clock, refreshMs: 30_000 })
  const first = cp.head()
  t.match(verifyCheckpoint(store.trustedKeys, first), {
    seq: info.seq,
    chain: store.index.chainAt(info.seq),
    time: 1_800_000_000_000_000,
  })
  clock.advance(10_000)
  t.equal(cp.head(), first, 'within the window: the same checkpoint, no new signature')
  t.equal(signed, 1)
  cp.start()
  clock.advance(30_000)
  t.equal(signed, 2, 'the idle timer re-signed the head by itself')
  t.equal(cp.head().time, 1_800_000_040_000_000, 'at the time of the tick')
  t.equal(signed, 2, 'and that is what the next request gets')
  cp.stop()
  clock.advance(120_000)
  t.equal(signed, 2, 'no tick after stop()')
  t.throws(() => new Checkpointer(counting, { refreshMs: 10 }), { code: 'CLA_ERR_INVALID_OPTION' })
})
