// lib/store/chain.ts and lib/store/checkpoint.ts against the vectors of docs/format.md
// "The replication log": the chain values were computed with Python's hashlib from the
// byte layout alone, and the checkpoint's Ed25519 signature is made and checked again with
// tweetnacl (an independent implementation).
import { readFileSync } from 'node:fs'
import { createHash } from 'node:crypto'
import nacl from 'tweetnacl'
import t from 'tap'
import { CHAIN_GENESIS, chainNext, chainOver, fileSha256 } from '../../../lib/store/chain.js'
import {
  CHECKPOINT_DOMAIN,
  checkpointBytes,
  checkpointHeader,
  parseCheckpointHeader,
  signCheckpoint,
  verifyCheckpoint,
} from '../../../lib/store/checkpoint.js'
import { makeKeyRing, signingKeyFromSeed } from '../../../lib/store/keys.js'

const p0 = 'ab'.repeat(16)
const e1 = {
  seq: 1,
  created_at: 1_700_000_000_000_000,
  path: `ab/${p0}/1700000000000000_0123456789abcdef.cla`,
  file_sha256: fileSha256(Buffer.from('first .cla file')),
}
const e2 = {
  seq: 2,
  created_at: 1_700_000_000_000_007,
  path: `ab/${p0}/1700000000000007_fedcba9876543210.cla`,
  file_sha256: fileSha256(Buffer.from('second .cla file')),
}
const C1 = '2bdfb12546050f10b4409b67bf56fbf88ba459cd3a9089c86b5a8d62680e7346'
const C2 = '0bf59e3e064326319bf6b3d396037106db3250235a557f86d3acc5fa7ef9898e'
const SEED = Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1))
const SIGNATURE =
  'ErXOSKtSMWZGAat6mhnC6a/ZFWiOW0a2meQsTvb/MB1OwxBLADPGCchW/Npzxiwv0NhXVOOeRTgGdUBGXgNLBQ=='
const body = {
  store_id: '0123456789abcdef0123456789abcdef',
  generation: 1,
  seq: 2,
  created_at: 1_700_000_000_000_007,
  chain: C2,
  time: 1_700_000_000_500_000,
}

t.test('the chain vector', async (t) => {
  t.equal(CHAIN_GENESIS, '00'.repeat(32))
  t.equal(e1.file_sha256, 'af6b08826b17fb744010464cccf585f19da9d0fcca6982544ba99698e9f5acdd')
  t.equal(chainNext(CHAIN_GENESIS, e1), C1)
  t.equal(chainNext(C1, e2), C2)
  t.equal(chainOver(CHAIN_GENESIS, [e1, e2]), C2)
  t.not(chainOver(CHAIN_GENESIS, [e2, e1]), C2, 'order matters')
  t.not(chainNext(CHAIN_GENESIS, { ...e1, seq: 3 }), C1, 'the seq is committed')
  t.not(chainNext(CHAIN_GENESIS, { ...e1, created_at: e1.created_at + 1 }), C1)
  t.not(chainNext(CHAIN_GENESIS, { ...e1, path: e1.path.replace('0123', '1123') }), C1)
  t.throws(() => chainNext('xyz', e1), { code: 'CLA_ERR_INVALID_INPUT' })
  t.throws(() => chainNext(CHAIN_GENESIS, { ...e1, file_sha256: 'ab' }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
})

t.test('the checkpoint vector, checked with tweetnacl', async (t) => {
  const key = signingKeyFromSeed(SEED)
  const cp = signCheckpoint(key, body)
  t.equal(cp.signature, SIGNATURE, 'Ed25519 is deterministic: the documented signature')
  t.equal(cp.key_id, '65b60673d6ed884bf01c2c222d82ada0')
  const signed = Buffer.concat([Buffer.from(CHECKPOINT_DOMAIN, 'ascii'), checkpointBytes(cp)])
  t.equal(
    signed.toString(),
    'clavitor checkpoint v1\nstore 0123456789abcdef0123456789abcdef\ngeneration 1\nseq 2\ncreated_at 1700000000000007\nchain 0bf59e3e064326319bf6b3d396037106db3250235a557f86d3acc5fa7ef9898e\ntime 1700000000500000\n',
  )
  const pair = nacl.sign.keyPair.fromSeed(SEED)
  t.equal(Buffer.from(nacl.sign.detached(signed, pair.secretKey)).toString('base64'), SIGNATURE)
  t.ok(nacl.sign.detached.verify(signed, Buffer.from(SIGNATURE, 'base64'), pair.publicKey))
  t.equal(
    createHash('sha256').update(pair.publicKey).digest().subarray(0, 16).toString('hex'),
    cp.key_id,
  )
  const ring = makeKeyRing([Buffer.from(pair.publicKey)])
  t.same(verifyCheckpoint(ring, cp), cp)
  for (const [what, bad] of [
    ['a later time', { ...cp, time: cp.time + 1 }],
    ['another chain', { ...cp, chain: C1 }],
    ['another store', { ...cp, store_id: 'ffff' }],
  ] as const) {
    t.throws(() => verifyCheckpoint(ring, bad), { code: 'CLA_ERR_SYNC_CHECKPOINT' }, what)
  }
  t.throws(() => verifyCheckpoint(makeKeyRing([]), cp), { code: 'CLA_ERR_SYNC_CHECKPOINT' })
  t.throws(() => verifyCheckpoint(ring, { ...cp, seq: -1 }), { code: 'CLA_ERR_SYNC_CHECKPOINT' })
  t.throws(() => verifyCheckpoint(ring, null), { code: 'CLA_ERR_SYNC_CHECKPOINT' })
  t.same(parseCheckpointHeader(checkpointHeader(cp)), cp, 'the header round-trips')
})

t.test('docs/format.md shows the same vector', async (t) => {
  const doc = readFileSync(new URL('../../../docs/format.md', import.meta.url), 'utf8')
  for (const v of [
    C1,
    C2,
    SIGNATURE,
    e1.file_sha256,
    e2.file_sha256,
    '65b60673d6ed884bf01c2c222d82ada0',
  ])
    t.ok(doc.includes(v), v)
})
