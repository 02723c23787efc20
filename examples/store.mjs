// A WORM blob store on its own: put a few versions, read the latest back, verify the whole
// store. Run: node examples/store.mjs [dataDir]   (a temp folder by default)
//
// Files are sealed with `chattr +i` when this process may (root or CAP_LINUX_IMMUTABLE on
// ext4/xfs); elsewhere the store warns once and goes on ('best-effort').
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BlobStore } from 'clavitor-core/store'

const dataDir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'clavitor-example-store-'))
const store = await BlobStore.init({ dataDir, onWarning: () => {} })
try {
  const p0 = 'a1'.repeat(16) // a device's id: 32..128 lower-case hex characters
  await store.put(p0, Buffer.from('first WL3 version'))
  const latest = await store.put(p0, Buffer.from('second WL3 version'))

  const info = store.latest(p0) // the index row of the newest version
  const payload = await store.readPayload(info) // read from the file, hash checked
  const report = await store.verify() // every file: hash, signature, index
  console.log(
    JSON.stringify({
      dataDir,
      versions: store.versions(p0).length,
      latestSeq: latest.seq,
      payload: payload.toString(),
      verified: report.ok,
      files: report.files,
    }),
  )
} finally {
  await store.close()
}
