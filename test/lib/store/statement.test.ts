// Statements: the store's detached, domain-separated signatures (lib/store/keys.ts), the
// proof inside a v2 audit anchor. They must verify in tweetnacl (what a vault uses) and
// never be interchangeable with a .cla signature by the same key.
import t from 'tap'
import nacl from 'tweetnacl'
import { encodeCla } from '../../../lib/store/format.js'
import {
  makeKeyRing,
  signStatement,
  signingKeyFromSeed,
  statementBytes,
  verifyStatement,
} from '../../../lib/store/keys.js'

const key = signingKeyFromSeed(Buffer.alloc(32, 7))
const ring = makeKeyRing([key.publicKey])
const DOMAIN = 'clavitor audit anchor v2\n'

t.test('a statement verifies here and in tweetnacl, over domain + body only', async (t) => {
  const body = Buffer.from('[1,"ab",2]')
  const sig = signStatement(key, DOMAIN, body)
  t.equal(sig.length, 64)
  t.ok(verifyStatement(ring, key.keyId, DOMAIN, body, sig))
  t.ok(
    nacl.sign.detached.verify(Buffer.concat([Buffer.from(DOMAIN), body]), sig, key.publicKey),
    'tweetnacl agrees on the signed bytes',
  )
  t.notOk(verifyStatement(ring, key.keyId, DOMAIN, Buffer.from('[1,"ab",3]'), sig), 'other body')
  t.notOk(verifyStatement(ring, key.keyId, 'clavitor other v1\n', body, sig), 'other domain')
  t.notOk(verifyStatement(ring, 'f'.repeat(32), DOMAIN, body, sig), 'unknown key id')
  t.notOk(verifyStatement(ring, key.keyId, DOMAIN, body, sig.subarray(1)), 'short signature')
})

t.test('a domain can never make the signed bytes look like a .cla', async (t) => {
  for (const bad of ['CLAV', 'CLAV\n', 'Clavitor x\n', 'clavitor x', 'clavitor\nx\n', '\n', '']) {
    t.throws(() => statementBytes(bad, Buffer.alloc(0)), { code: 'CLA_ERR_INVALID_OPTION' }, bad)
  }
  // a .cla signature (over "CLAV…") does not pass as a statement of any domain + rest
  const file = encodeCla({
    p0: '0'.repeat(64),
    createdAt: 1,
    seq: 1,
    payload: Buffer.from('x'),
    key,
  })
  const sig = file.subarray(file.length - 64)
  const signed = file.subarray(0, file.length - 64)
  t.ok(nacl.sign.detached.verify(signed, sig, key.publicKey), 'the .cla signature is real')
  t.notOk(verifyStatement(ring, key.keyId, DOMAIN, signed, sig))
})
