import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import nacl from 'tweetnacl'
import {
  CLA_HEADER_FIXED,
  decodeCla,
  encodeCla,
  keyIdOf,
  makeKeyRing,
  parseBlobPath,
  signingKeyFromSeed,
  verifyCla,
  verifyClaAsync,
  blobFileName,
  generateSigningKey,
  parsePublicKeyFile,
} from '../../../lib/store/index.js'

// The test vector of docs/format.md.
const SEED = Buffer.from(Array.from({ length: 32 }, (_, i) => i))
const VECTOR = {
  p0: '00112233445566778899aabbccddeeff',
  createdAt: 1700000000000000,
  seq: 42,
  payload: Buffer.from('WL3 test payload'),
}
const VECTOR_HEX =
  '434c41560110000000060a24181e4000000000000000002a0000000000000010' +
  'c633158cc900db2a498408b6e62a41f610dbb427af9250c17e1630d98cafaf16' +
  '56475aa75463474c0285df5dbf2bcab7' +
  '00112233445566778899aabbccddeeff' +
  '574c332074657374207061796c6f6164' +
  '36556b1fa6a0ca462045ef7d8c1260878d4adab78c5acedd3e9fc33c99b2d339' +
  '931976fcb1a9aace8074bca518ec62e73a07ad223efc680a7991a44538705603'

const key = signingKeyFromSeed(SEED)
const ring = makeKeyRing([key.publicKey])

t.test('the docs/format.md vector, byte for byte', async (t) => {
  const buf = encodeCla({ ...VECTOR, key })
  t.equal(buf.toString('hex'), VECTOR_HEX)
  t.equal(key.keyId, '56475aa75463474c0285df5dbf2bcab7')
  const doc = readFileSync(new URL('../../../docs/format.md', import.meta.url), 'utf8').replace(
    /\s+/g,
    '',
  )
  t.ok(doc.includes(VECTOR_HEX), 'docs/format.md carries the same hex')
  t.ok(doc.includes(key.publicKey.toString('hex')), 'docs/format.md carries the public key')
})

t.test('node:crypto keys agree with tweetnacl (raw 32-byte form)', async (t) => {
  const kp = nacl.sign.keyPair.fromSeed(SEED)
  t.equal(Buffer.from(kp.publicKey).toString('hex'), key.publicKey.toString('hex'))
  t.equal(
    keyIdOf(key.publicKey),
    createHash('sha256').update(kp.publicKey).digest('hex').slice(0, 32),
  )
  const rnd = generateSigningKey()
  t.equal(
    Buffer.from(nacl.sign.keyPair.fromSeed(rnd.seed).publicKey).toString('hex'),
    rnd.publicKey.toString('hex'),
  )
})

t.test('a store-signed file verifies with tweetnacl', async (t) => {
  const rnd = generateSigningKey()
  for (const payload of [Buffer.alloc(0), Buffer.from('x'), Buffer.alloc(4096, 7)]) {
    const buf = encodeCla({ p0: 'ab'.repeat(64), createdAt: 1, seq: 1, payload, key: rnd })
    const d = decodeCla(buf)
    t.ok(
      nacl.sign.detached.verify(d.signed, d.signature, rnd.publicKey),
      `payload ${payload.length} bytes`,
    )
  }
})

t.test('a tweetnacl-signed vector verifies in the store', async (t) => {
  const kp = nacl.sign.keyPair.fromSeed(SEED)
  const p0 = Buffer.from(VECTOR.p0, 'hex')
  const head = Buffer.alloc(CLA_HEADER_FIXED)
  head.write('CLAV', 0, 'latin1')
  head.writeUInt8(1, 4)
  head.writeUInt8(p0.length, 5)
  head.writeBigUInt64BE(BigInt(VECTOR.createdAt), 8)
  head.writeBigUInt64BE(BigInt(VECTOR.seq), 16)
  head.writeBigUInt64BE(BigInt(VECTOR.payload.length), 24)
  createHash('sha256').update(VECTOR.payload).digest().copy(head, 32)
  createHash('sha256').update(kp.publicKey).digest().copy(head, 64, 0, 16)
  const signed = Buffer.concat([head, p0, VECTOR.payload])
  const file = Buffer.concat([signed, Buffer.from(nacl.sign.detached(signed, kp.secretKey))])
  const d = verifyCla(file, makeKeyRing([Buffer.from(kp.publicKey)]))
  t.equal(d.p0, VECTOR.p0)
  t.equal(d.seq, 42)
  t.equal(d.createdAt, VECTOR.createdAt)
  t.equal(d.payload.toString(), 'WL3 test payload')
  t.equal(file.toString('hex'), VECTOR_HEX, 'Ed25519 is deterministic: same bytes as the store')
})

t.test('tampering is caught with typed errors', async (t) => {
  const good = encodeCla({ ...VECTOR, key })
  const flip = (off: number) => {
    const b = Buffer.from(good)
    b[off] = b[off]! ^ 1
    return b
  }
  t.throws(() => verifyCla(flip(0), ring), { code: 'CLA_ERR_BAD_FORMAT' })
  t.throws(() => verifyCla(flip(4), ring), { code: 'CLA_ERR_BAD_FORMAT' })
  t.throws(() => verifyCla(flip(6), ring), { code: 'CLA_ERR_BAD_FORMAT' })
  t.throws(() => verifyCla(flip(good.length - 70), ring), { code: 'CLA_ERR_BAD_HASH' }) // payload
  t.throws(() => verifyCla(flip(40), ring), { code: 'CLA_ERR_BAD_HASH' }) // sha256 field
  t.throws(() => verifyCla(flip(20), ring), { code: 'CLA_ERR_BAD_SIGNATURE' }) // seq
  t.throws(() => verifyCla(flip(good.length - 1), ring), { code: 'CLA_ERR_BAD_SIGNATURE' })
  t.throws(() => verifyCla(flip(70), ring), { code: 'CLA_ERR_UNKNOWN_KEY' })
  t.throws(() => verifyCla(good.subarray(0, good.length - 1), ring), { code: 'CLA_ERR_BAD_FORMAT' })
  t.throws(() => verifyCla(Buffer.concat([good, Buffer.from([0])]), ring), {
    code: 'CLA_ERR_BAD_FORMAT',
  })
  t.throws(() => verifyCla(Buffer.alloc(10), ring, 'x.cla'), {
    code: 'CLA_ERR_BAD_FORMAT',
    message: /x\.cla/,
  })
  t.throws(() => verifyCla(good, makeKeyRing([])), { code: 'CLA_ERR_UNKNOWN_KEY' })
  t.throws(() => encodeCla({ ...VECTOR, p0: 'AB'.repeat(16), key }), { code: 'CLA_ERR_INVALID_P0' })
  t.throws(() => encodeCla({ ...VECTOR, seq: -1, key }), { code: 'CLA_ERR_INVALID_INPUT' })
})

t.test(
  'verifyClaAsync (thread pool) accepts and refuses exactly what verifyCla does',
  async (t) => {
    const good = encodeCla({ ...VECTOR, key })
    const flip = (off: number) => {
      const b = Buffer.from(good)
      b[off] = b[off]! ^ 1
      return b
    }
    const d = await verifyClaAsync(good, ring, 'good.cla')
    t.same(d.p0, verifyCla(good, ring).p0)
    t.equal(d.seq, VECTOR.seq)
    const cases: Array<[Buffer, string]> = [
      [flip(0), 'CLA_ERR_BAD_FORMAT'],
      [flip(good.length - 70), 'CLA_ERR_BAD_HASH'],
      [flip(20), 'CLA_ERR_BAD_SIGNATURE'],
      [flip(good.length - 1), 'CLA_ERR_BAD_SIGNATURE'],
      [flip(70), 'CLA_ERR_UNKNOWN_KEY'],
    ]
    for (const [buf, code] of cases) {
      t.throws(() => verifyCla(buf, ring, 'bad.cla'), { code })
      await t.rejects(verifyClaAsync(buf, ring, 'bad.cla'), { code, message: /bad\.cla/ }, code)
    }
    // many in flight at once: each answer belongs to its own file
    const all = await Promise.allSettled(
      Array.from({ length: 64 }, (_, i) =>
        verifyClaAsync(i % 3 ? good : flip(good.length - 1), ring),
      ),
    )
    t.same(
      all.map((r) => r.status),
      Array.from({ length: 64 }, (_, i) => (i % 3 ? 'fulfilled' : 'rejected')),
    )
  },
)

t.test('blob paths and key files', async (t) => {
  const name = blobFileName(1700000000000000, '0123456789abcdef')
  t.equal(name, '1700000000000000_0123456789abcdef.cla')
  t.same(parseBlobPath(`00/${VECTOR.p0}/${name}`), {
    shard: '00',
    p0: VECTOR.p0,
    createdAt: 1700000000000000,
    random: '0123456789abcdef',
  })
  t.equal(parseBlobPath(`01/${VECTOR.p0}/${name}`), undefined, 'shard must match p0')
  t.equal(parseBlobPath(`00/${VECTOR.p0}/../${name}`), undefined)
  t.equal(parseBlobPath(`00/${VECTOR.p0}/${name}.tmp`), undefined)
  t.same(parsePublicKeyFile(key.publicKey), key.publicKey)
  t.same(parsePublicKeyFile(Buffer.from(key.publicKey.toString('hex') + '\n')), key.publicKey)
  t.throws(() => parsePublicKeyFile(Buffer.alloc(31)), { code: 'CLA_ERR_INVALID_OPTION' })
  t.throws(() => signingKeyFromSeed(Buffer.alloc(31)), { code: 'CLA_ERR_INVALID_OPTION' })
})
