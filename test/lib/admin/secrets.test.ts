import { statSync, writeFileSync } from 'node:fs'
import t from 'tap'
import { loadOrCreateSecret, randomToken, sha256hex } from '../../../lib/admin/secrets.js'

t.test('loadOrCreateSecret: created once with mode 0600, then read back', async (t) => {
  const dir = t.testdir({})
  const file = `${dir}/keys/admin-cookie.key`
  const a = loadOrCreateSecret(file)
  t.ok(a.length >= 43)
  t.equal(statSync(file).mode & 0o777, 0o600)
  t.equal(loadOrCreateSecret(file), a, 'the same secret after a restart')
  writeFileSync(file, 'short\n')
  t.throws(() => loadOrCreateSecret(file), { code: 'CLA_ERR_INVALID_OPTION' })
})

t.test('tokens are random and stored hashed', async (t) => {
  const a = randomToken()
  t.match(a, /^[A-Za-z0-9_-]{43}$/)
  t.not(a, randomToken())
  t.equal(sha256hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad')
})
