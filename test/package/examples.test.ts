// Every program in examples/ runs as an embedder would run it, against the built package
// (the files import 'clavitor-core/…', which Node resolves to this package's own exports).
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { clearFlags } from '../fixtures/credentials.js'

const REPO = new URL('../..', import.meta.url).pathname
const run = async (file: string, args: string[] = []) => {
  const r = await execa('node', [join(REPO, 'examples', file), ...args], { reject: false })
  if (r.exitCode !== 0) throw new Error(`${file} exited ${r.exitCode}: ${r.stderr}`)
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}
const dir = mkdtempSync(join(tmpdir(), 'clavitor-examples-'))
t.teardown(() => {
  clearFlags(dir)
  rmSync(dir, { recursive: true, force: true })
})

t.test('store.mjs: put two versions, read the latest, verify', async (t) => {
  const [out] = await run('store.mjs', [join(dir, 'store')])
  t.match(out, {
    versions: 2,
    latestSeq: 2,
    payload: 'second WL3 version',
    verified: true,
    files: 2,
  })
})

t.test('verify-cla.mjs: a good file passes, a flipped byte is refused', async (t) => {
  const out = await run('verify-cla.mjs')
  t.match(out[0], { ok: true, seq: 1, payload: 'a WL3 record' })
  t.same(out[1], { tampered: 'refused', code: 'CLA_ERR_BAD_HASH' })
})

t.test('verify-cla.mjs FILE KEY: a file and key the CLI wrote', async (t) => {
  // The store example's folder: its first file and the core's public key.
  const cli = join(REPO, 'scripts/clavitor')
  const data = join(dir, 'store')
  const pub = join(dir, 'signing.pub')
  await execa(cli, ['store', 'public-key', '--data', data, '--out', pub])
  const get = await execa(cli, ['store', 'versions', '--data', data, '--p0', 'a1'.repeat(16)])
  const versions = JSON.parse(get.stdout) as Array<{ path: string }>
  const out = await run('verify-cla.mjs', [join(data, 'store', versions[0]!.path), pub])
  t.match(out[0], { ok: true, p0: 'a1'.repeat(16), payload: 'first WL3 version' })
})

t.test("pop-replica.mjs: a POP pulls, verifies and serves the core's blobs", async (t) => {
  const [out] = await run('pop-replica.mjs', [join(dir, 'replica')])
  t.match(out, { sealed: 2, latest: 'WL3 v2', popVerified: true })
  t.match(out!.etag, /^"[0-9a-f]{64}"$/)
})
