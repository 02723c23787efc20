// Regression: a crash between "link into the store" and "unlink the staged name" leaves a
// second name of a store file in staging; once recovery seals the file (+i is per inode),
// plain rm of staging fails forever. removeStagingTree removes the staged name and keeps
// the store file sealed.
import t, { type Test } from 'tap'

import { execFileSync } from 'node:child_process'
import { existsSync, linkSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { BlobStore, removeStagingTree } from '../../../lib/store/index.js'

const isRoot = process.getuid?.() === 0
const flags = (p: string) => execFileSync('lsattr', ['-d', p], { encoding: 'utf8' }).split(' ')[0]!

/**
 * A sealed store with one blob, and what a crash between link and unlink leaves: a second
 * name of its (sealed) store file at `staging/{leftover(path)}`.
 */
async function withLeftover(
  t: Test,
  p0: string,
  payload: string,
  leftover: (storePath: string) => string,
) {
  const dir = mkdtempSync(join(tmpdir(), 'clavitor-staging-'))
  t.teardown(() => {
    execFileSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' })
    rmSync(dir, { recursive: true, force: true })
  })
  const store = await BlobStore.init({ dataDir: join(dir, 'data'), protection: 'enforce' })
  t.teardown(() => store.close())
  const info = await store.put(p0, Buffer.from(payload))
  const storeFile = join(store.root, info.path)
  t.match(flags(storeFile), /i/, 'the store file is sealed')
  const staging = join(dir, 'sync-staging')
  const staged = join(staging, leftover(info.path))
  mkdirSync(join(staged, '..'), { recursive: true })
  execFileSync('chattr', ['-i', storeFile])
  linkSync(storeFile, staged)
  execFileSync('chattr', ['+i', storeFile])
  t.throws(() => rmSync(staging, { recursive: true, force: true }), 'plain rm fails')
  return { store, info, storeFile, staging }
}

t.test(
  'a staged name of a sealed store file is removed; the store file stays sealed',
  { skip: isRoot ? false : 'needs root for chattr' },
  async (t) => {
    const { store, info, storeFile, staging } = await withLeftover(
      t,
      'ab'.repeat(16),
      'wl3',
      (path) => `run-3/${path}`,
    )
    const resealed = await removeStagingTree(staging, store.root)
    t.notOk(existsSync(staging), 'staging is gone')
    t.same(resealed, [storeFile])
    t.match(flags(storeFile), /i/, 'the store file is sealed again')
    t.same(await store.readPayload(info), Buffer.from('wl3'))
    t.ok((await store.verify()).ok, 'the store verifies')
    t.same(await removeStagingTree(staging, store.root), [], 'a missing folder is fine')
  },
)

t.test(
  "flat staging (the pull's layout): the store name is found from the blob header",
  { skip: isRoot ? false : 'needs root for chattr' },
  async (t) => {
    const { store, storeFile, staging } = await withLeftover(
      t,
      'cd'.repeat(20),
      'flat',
      (path) => `run-0/${path.split('/').pop()!}`,
    )
    t.same(await removeStagingTree(staging, store.root), [storeFile])
    t.notOk(existsSync(staging), 'staging is gone')
    t.match(flags(storeFile), /i/, 'the store file is sealed again')
    t.ok((await store.verify()).ok, 'the store verifies')
  },
)
