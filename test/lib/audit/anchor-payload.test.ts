// The anchor payload (lib/audit/anchor-payload.ts): only the anchor writer's statement
// makes a trusted anchor; v1 is legacy; anything else is foreign, and reading never throws.
import t from 'tap'
import { randomBytes } from 'node:crypto'
import {
  ANCHOR_DOMAIN,
  encodeAnchor,
  readAnchorPayload,
  type AnchorSigner,
  type AnchorVerifier,
} from '../../../lib/audit/anchor-payload.js'
import {
  makeKeyRing,
  signStatement,
  signingKeyFromSeed,
  verifyStatement,
} from '../../../lib/store/keys.js'

const core = signingKeyFromSeed(Buffer.alloc(32, 1))
const other = signingKeyFromSeed(Buffer.alloc(32, 2))
const signerOf = (k: typeof core): AnchorSigner => ({
  signStatement: (d, b) => ({ keyId: k.keyId, signature: signStatement(k, d, b) }),
})
const ring = makeKeyRing([core.publicKey])
const verifier: AnchorVerifier = {
  verifyStatement: (d, b, id, s) => verifyStatement(ring, id, d, b, s),
}
const fields = { id: 7, hash: 'cd'.repeat(32), at: 1_700_000_000_000_000 }
const json = (v: unknown) => Buffer.from(JSON.stringify(v))

t.test('the writer signs over a fixed domain; the reader trusts exactly that', async (t) => {
  t.equal(ANCHOR_DOMAIN, 'clavitor audit anchor v2\n')
  const payload = encodeAnchor(fields, signerOf(core))
  t.same(readAnchorPayload(payload, verifier), { kind: 'trusted', anchor: fields })
  const j = JSON.parse(payload.toString('utf8'))
  t.match(j, { v: 2, type: 'clavitor.audit.anchor', ...fields, key_id: core.keyId })
  for (const [name, change] of [
    ['another id', { id: 8 }],
    ['another hash', { hash: 'ef'.repeat(32) }],
    ['another time', { at: fields.at + 1 }],
    ['a random sig', { sig: randomBytes(64).toString('hex') }],
  ] as const) {
    t.match(
      readAnchorPayload(json({ ...j, ...change }), verifier),
      { kind: 'foreign', why: /statement does not verify/ },
      name,
    )
  }
  t.match(
    readAnchorPayload(encodeAnchor(fields, signerOf(other)), verifier),
    { kind: 'foreign', why: /does not verify/ },
    'signed by a key this store does not trust',
  )
})

t.test('v1 is legacy; anything else is foreign, never a throw', async (t) => {
  const v1 = { v: 1, type: 'clavitor.audit.anchor', id: 3, hash: 'ab'.repeat(32), at: 5 }
  t.same(readAnchorPayload(json(v1), verifier), {
    kind: 'legacy',
    anchor: { id: 3, hash: 'ab'.repeat(32), at: 5 },
  })
  const cases: Array<[string, Buffer, RegExp]> = [
    ['not JSON', Buffer.from([0, 1, 2, 0xff]), /not JSON/],
    ['empty', Buffer.alloc(0), /not JSON/],
    ['a JSON string', json('anchor'), /not an object/],
    ['null', json(null), /not an object/],
    ['an array', json([1, 2]), /not an object/],
    ['another type', json({ ...v1, type: 'x' }), /type/],
    ['id 0', json({ ...v1, id: 0 }), /id or hash/],
    ['id a string', json({ ...v1, id: '3' }), /id or hash/],
    ['short hash', json({ ...v1, hash: 'ab' }), /id or hash/],
    ['upper-case hash', json({ ...v1, hash: 'AB'.repeat(32) }), /id or hash/],
    ['version 3', json({ ...v1, v: 3 }), /unknown anchor version/],
    ['v2 without proof', json({ ...v1, v: 2 }), /key_id and sig/],
    ['v2 with a bad at', json({ ...v1, v: 2, at: -1 }), /at is malformed/],
  ]
  for (const [name, payload, why] of cases) {
    t.match(readAnchorPayload(payload, verifier), { kind: 'foreign', why }, name)
  }
})
