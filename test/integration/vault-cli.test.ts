// The `clavitor vault …` CLI contract, by spawning scripts/clavitor for real; the key it
// prints then authenticates against the core's credentials API on the same data folder.
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { openDb, nowMicros } from '../../lib/db/open.js'
import { openCore } from '../../lib/core.js'
import { buildCoreApp } from '../../server/app.js'
import { clearFlags, p0Of } from '../fixtures/credentials.js'

const REPO = new URL('../..', import.meta.url).pathname
const clavitor = (args: string[], data: string) =>
  execa(join(REPO, 'scripts/clavitor'), args, {
    reject: false,
    env: { CLAVITOR_PROTECTION: 'best-effort', CLAVITOR_DATA: data },
  })

t.test('vault create, key, list, revoke-key; the key works on the API', async (t) => {
  const data = mkdtempSync(join(tmpdir(), 'clavitor-vaultcli-'))
  t.teardown(() => {
    clearFlags(data)
    rmSync(data, { recursive: true, force: true })
  })
  const db = openDb(join(data, 'meta.db'))
  const now = nowMicros()
  db.prepare(
    "INSERT INTO customers (id, level, email, created_at, updated_at) VALUES ('acme', 1, 'a@x.test', ?, ?)",
  ).run(now, now)
  db.prepare(
    "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES ('sub_acme', 'acme', 'active', 'EUR', ?, ?)",
  ).run(now, now)
  db.close()

  const missing = await clavitor(['vault', 'create', '--customer', 'acme'], data)
  t.equal(missing.exitCode, 2, 'missing --name is bad input')
  const unknown = await clavitor(['vault', 'create', '--customer', 'nobody', '--name', 'x'], data)
  t.equal(unknown.exitCode, 1)
  t.match(unknown.stderr, /^clavitor: CLA_ERR_NOT_FOUND: customer nobody does not exist$/)

  const created = await clavitor(
    ['vault', 'create', '--customer', 'acme', '--subscription', 'sub_acme', '--name', 'demo'],
    data,
  )
  t.equal(created.exitCode, 0, created.stderr)
  const vaultId = created.stdout.trim()
  t.match(vaultId, /^vlt_[0-9a-f]{16}$/)
  const key = await clavitor(['vault', 'key', vaultId, '--json'], data)
  t.equal(key.exitCode, 0, key.stderr)
  const k = JSON.parse(key.stdout) as { id: string; key: string; vault_id: string }
  t.match(k, { vault_id: vaultId, key: /^clv_[0-9a-f]{16}_[0-9a-f]{64}$/ })
  const list = await clavitor(['vault', 'list', '--json'], data)
  t.match(JSON.parse(list.stdout), [{ id: vaultId, active_keys: 1, subscription_status: 'active' }])

  const core = await openCore({ dataDir: data, protection: 'best-effort' })
  const app = await buildCoreApp({ core, admin: { onSetupUrl: () => {} } })
  const reg = () =>
    app.inject({
      method: 'POST',
      url: '/api/v1/credentials/register',
      headers: { authorization: `Bearer ${k.key}` },
      payload: { p0: p0Of(1), wl3: Buffer.from('hello').toString('base64') },
    })
  t.equal((await reg()).statusCode, 201, 'the printed key registers')
  await app.close()
  await core.close()

  const revoked = await clavitor(['vault', 'revoke-key', k.id], data)
  t.equal(revoked.exitCode, 0, revoked.stderr)
  const core2 = await openCore({ dataDir: data, protection: 'best-effort' })
  const app2 = await buildCoreApp({ core: core2, admin: { onSetupUrl: () => {} } })
  const again = await app2.inject({
    method: 'POST',
    url: '/api/v1/credentials/register',
    headers: { authorization: `Bearer ${k.key}` },
    payload: { p0: p0Of(1), wl3: 'aGVsbG8=' },
  })
  t.equal(again.json().error.code, 'CLA_ERR_API_KEY_REVOKED')
  await app2.close()
  await core2.close()
})
