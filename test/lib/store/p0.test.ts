import t from 'tap'
import { isValidP0, shardOf, validateP0 } from '../../../lib/store/p0.js'

t.test('accepts lowercase hex of even length 32..128', async (t) => {
  for (const p of [
    '0'.repeat(32),
    'ab'.repeat(16),
    'f'.repeat(128),
    '0123456789abcdef'.repeat(3),
  ]) {
    t.ok(isValidP0(p), p)
    t.equal(validateP0(p), p)
  }
  t.equal(shardOf('ab'.repeat(16)), 'ab')
})

t.test('refuses everything else with CLA_ERR_INVALID_P0, no normalising', async (t) => {
  const bad: unknown[] = [
    '',
    'a'.repeat(30),
    'a'.repeat(33),
    'a'.repeat(130),
    'A'.repeat(32),
    'ab'.repeat(15) + 'AB',
    '../' + 'a'.repeat(32),
    'a'.repeat(16) + '/' + 'a'.repeat(15),
    'a'.repeat(31) + '\0',
    ' ' + 'a'.repeat(32),
    'a'.repeat(32) + '\n',
    'g'.repeat(32),
    '..'.repeat(16),
    42,
    null,
    undefined,
  ]
  for (const p of bad) {
    t.notOk(isValidP0(p), JSON.stringify(p))
    t.throws(() => validateP0(p), { code: 'CLA_ERR_INVALID_P0' })
  }
})
