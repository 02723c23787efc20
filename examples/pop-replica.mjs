// A POP replica pulling from a core, both in this process: the core's change feed handed
// to the POP as a FeedClient, rsync copying from the core's store folder; every page checked
// against the core's signed checkpoint of its replication log and every file against its
// entry (whole-file sha256) before the POP seals and serves it. In production the feed
// is the core's mTLS POP API and the rsync source its daemon (docs/operations.md).
// Run: node examples/pop-replica.mjs [dir]   (needs rsync on PATH; a temp folder by default)
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { openCore, openPop } from 'clavitor-core'
import { feedPage } from 'clavitor-core/replication'
import { storePaths } from 'clavitor-core/store'

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'clavitor-example-pop-'))
const core = await openCore({ dataDir: join(dir, 'core'), paddle: {} })
const p0 = 'c3'.repeat(16)
await core.store.put(p0, Buffer.from('WL3 v1'))
await core.store.put(p0, Buffer.from('WL3 v2'))

/** @type {import('clavitor-core/replication').FeedClient} */
const feed = {
  page: async (cursor, limit) =>
    feedPage(
      {
        db: core.db,
        storeId: core.store.storeId,
        generation: core.store.generation,
        checkpoints: core.checkpoints, // signs each page's checkpoint with the core's key
      },
      { cursor, limit },
    ),
  report: async () => {}, // the core records each POP's state here (POST /pop/v1/report)
}

const pop = await openPop({
  dataDir: join(dir, 'pop'),
  popId: 'example-pop',
  feed,
  rsyncSource: storePaths(join(dir, 'core')).root + '/',
  initTrustKeys: [core.store.exportPublicKey().publicKey], // the POP trusts the core's key
})
try {
  const run = await pop.sync.run()
  const answer = await pop.lookup.latest(p0)
  console.log(
    JSON.stringify({
      sealed: run.sealed,
      latest: answer.payload.toString(),
      etag: answer.etag,
      popVerified: (await pop.store.verify()).ok,
    }),
  )
} finally {
  await pop.close()
  await core.close()
}
