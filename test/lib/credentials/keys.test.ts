import t from 'tap'
import {
  API_KEY_PATTERN,
  apiKeyIdOf,
  bearerToken,
  generateApiKey,
  hashSecret,
  parseApiKey,
  secretMatches,
} from '../../../lib/credentials/keys.js'

t.test('a generated key has the documented shape and its hash is of the secret', async (t) => {
  const k = generateApiKey()
  t.match(k.key, API_KEY_PATTERN)
  t.match(k.id, /^[0-9a-f]{16}$/)
  const parsed = parseApiKey(k.key)
  t.equal(parsed.id, k.id)
  t.equal(hashSecret(parsed.secret), k.hash)
  t.notOk(k.key.includes(k.hash), 'the stored hash is not part of the key')
  t.not(generateApiKey().key, k.key, 'keys are random')
})

t.test('malformed keys are refused with CLA_ERR_API_KEY_INVALID', async (t) => {
  const good = generateApiKey().key
  for (const bad of [
    '',
    'clv_',
    good.toUpperCase(),
    good.slice(0, -1),
    good + '0',
    good.replace('clv_', 'clx_'),
    `clv_${'0'.repeat(15)}_${'0'.repeat(64)}`,
    ' ' + good,
  ]) {
    t.throws(() => parseApiKey(bad), { code: 'CLA_ERR_API_KEY_INVALID' }, JSON.stringify(bad))
  }
})

t.test('secretMatches compares digests; an unknown id never matches', async (t) => {
  const k = generateApiKey()
  const { secret } = parseApiKey(k.key)
  t.ok(secretMatches(secret, k.hash))
  t.notOk(
    secretMatches(
      secret.replace(/.$/, (c) => (c === '0' ? '1' : '0')),
      k.hash,
    ),
  )
  t.notOk(secretMatches(secret, undefined))
  t.notOk(
    secretMatches('clavitor-dummy-secret', undefined),
    'the dummy secret does not open the dummy hash',
  )
})

t.test('bearer header parsing and key id extraction', async (t) => {
  const k = generateApiKey()
  t.equal(bearerToken(`Bearer ${k.key}`), k.key)
  t.equal(bearerToken(`bearer  ${k.key} `), k.key)
  t.equal(bearerToken(undefined), undefined)
  t.equal(bearerToken(`Basic abc`), undefined)
  t.equal(bearerToken('Bearer'), undefined)
  t.equal(apiKeyIdOf(k.key), k.id)
  t.equal(apiKeyIdOf(`clv_${k.id}_nonsense`), k.id)
  t.equal(apiKeyIdOf('garbage'), undefined)
})
