// The core's disk fills up (a small tmpfs holds its data folder): a registration is refused
// with a clear, retryable CLA_ERR_STORAGE_FULL (503, Retry-After), /healthz says so, the
// read-only `clavitor store verify` works and leaves nothing behind, nothing half-done is
// published; once space is freed, registrations go through again (issue 13 item 3).
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { openCore } from '../../lib/core.js'
import { nowMicros } from '../../lib/db/open.js'
import { buildCoreApp } from '../../server/app.js'
import { canMount } from '../fixtures/mount.js'
import { REPO } from '../fixtures/store/helpers.js'
import { tempDir } from '../fixtures/sync.js'

/** Writes `file` until the disk refuses (ENOSPC); returns the bytes written. */
function fill(file: string): number {
  const fd = openSync(file, 'w')
  const chunk = Buffer.alloc(64 * 1024, 1)
  let n = 0
  try {
    for (;;) n += writeSync(fd, chunk)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err
    // the last few blocks: smaller writes until nothing more fits
    for (let size = 4096; size >= 1; size = Math.floor(size / 2)) {
      try {
        for (;;) n += writeSync(fd, chunk.subarray(0, size))
      } catch {
        // next size down
      }
    }
  } finally {
    closeSync(fd)
  }
  return n
}

t.test('a full disk on the core is a clear, retryable fault', { skip: canMount() }, async (t) => {
  const dir = tempDir(t)
  const mnt = join(dir, 'small')
  mkdirSync(mnt)
  t.equal(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=6m', 'tmpfs', mnt]).status, 0)
  t.teardown(() => {
    spawnSync('umount', ['-l', mnt])
  })
  const data = join(mnt, 'data')
  const core = await openCore({
    dataDir: data,
    protection: 'best-effort',
    paddle: {},
    storage: { minFreeBytes: 256 * 1024, fullHoldMs: 0 },
  })
  t.teardown(() => core.close())
  const now = nowMicros()
  core.db
    .prepare(
      "INSERT INTO customers (id, parent_id, level, name, email, created_at, updated_at) VALUES ('acme', NULL, 1, 'acme', 'a@example.test', ?, ?)",
    )
    .run(now, now)
  core.db
    .prepare(
      "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES ('sub', 'acme', 'active', 'EUR', ?, ?)",
    )
    .run(now, now)
  const vault = core.credentials.createVault({
    customerId: 'acme',
    subscriptionId: 'sub',
    name: 'v',
  })
  const { key } = core.credentials.createApiKey(vault.id)
  const app = await buildCoreApp({ core })
  t.teardown(() => app.close())
  const register = (p0: string) =>
    app.inject({
      method: 'POST',
      url: '/api/v1/credentials/register',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      payload: { p0, wl3: Buffer.alloc(8192, 7).toString('base64') },
    })
  t.equal((await register('ab'.repeat(16))).statusCode, 201, 'room to write: registered')
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200)

  const filler = join(mnt, 'filler')
  fill(filler)
  const before = core.store.status()
  const full = await register('cd'.repeat(16))
  t.equal(full.statusCode, 503, full.body)
  t.equal(full.json().error.code, 'CLA_ERR_STORAGE_FULL')
  t.equal(full.headers['retry-after'], '60', 'retryable, and says when')
  const health = await app.inject({ url: '/healthz' })
  t.equal(health.statusCode, 503)
  t.match(health.json(), { ok: false, storage: { ok: false, status: 'low_space' } })
  const after = core.store.status()
  t.same(
    [after.blobs - after.unpublished, core.credentials.listCredentials('acme').items.length],
    [before.blobs - before.unpublished, 1],
    'nothing of the refused registration is published',
  )

  // read-only work needs no free space: verify runs, answers, leaves no probe file
  const verify = await execa(join(REPO, 'scripts/clavitor'), ['store', 'verify', '--data', data], {
    reject: false,
    env: { CLAVITOR_PROTECTION: 'best-effort' },
  })
  t.not(verify.exitCode, null)
  t.notMatch(verify.stderr, /ENOSPC|\n\s+at /, 'no stack trace')
  t.match(JSON.parse(verify.stdout), { missing: [], corrupt: [] }, 'a JSON report')
  t.same(
    readdirSync(join(data, 'staging')).filter((f) => f.startsWith('.seal-probe')),
    [],
    'no probe file left behind',
  )

  rmSync(filler)
  t.equal((await app.inject({ url: '/healthz' })).statusCode, 200, 'healthy once space is freed')
  const again = await register('cd'.repeat(16))
  t.equal(again.statusCode, 201, again.body)
  t.ok((await core.store.verify()).ok, 'the store verifies')
})
