import t from 'tap'
import {
  AUDIT_ANCHOR_P0,
  RESERVED_P0S,
  isValidP0,
  shardOf,
  validateClientP0,
  validateP0,
} from '../../../lib/store/p0.js'

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

t.test('a P0 from outside: the reserved ones are refused with CLA_ERR_P0_RESERVED', async (t) => {
  t.equal(AUDIT_ANCHOR_P0, '0'.repeat(64))
  t.ok(RESERVED_P0S.has(AUDIT_ANCHOR_P0))
  t.equal(validateP0(AUDIT_ANCHOR_P0), AUDIT_ANCHOR_P0, 'the store itself takes it (anchor writer)')
  t.throws(() => validateClientP0(AUDIT_ANCHOR_P0), {
    code: 'CLA_ERR_P0_RESERVED',
    status: 400,
    message: /reserved for the core's own records/,
  })
  for (const p of ['0'.repeat(32), '0'.repeat(62) + '01', '0'.repeat(128), 'ab'.repeat(16)]) {
    t.equal(validateClientP0(p), p, `${p} is an ordinary P0`)
  }
  t.throws(() => validateClientP0('A'.repeat(32)), { code: 'CLA_ERR_INVALID_P0' })
})
