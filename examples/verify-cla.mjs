// Verifying a .cla file the way a vault does, with nothing but the format module: no
// SQLite, no store, no server. Run: node examples/verify-cla.mjs FILE.cla PUBLIC_KEY
// (PUBLIC_KEY: the core's raw 32-byte signing.pub, from `clavitor store public-key`).
// Without arguments it makes its own key and file first, so it runs anywhere.
import { readFileSync } from 'node:fs'
import {
  encodeCla,
  generateSigningKey,
  isClavitorError,
  makeKeyRing,
  parsePublicKeyFile,
  verifyCla,
} from 'clavitor-core/format'

let file
let publicKey
if (process.argv[2] && process.argv[3]) {
  file = readFileSync(process.argv[2])
  publicKey = parsePublicKeyFile(readFileSync(process.argv[3]), process.argv[3])
} else {
  const key = generateSigningKey()
  file = encodeCla({
    p0: 'b2'.repeat(16),
    createdAt: Date.now() * 1000,
    seq: 1,
    payload: Buffer.from('a WL3 record'),
    key,
  })
  publicKey = key.publicKey
}

const ring = makeKeyRing([publicKey])
const cla = verifyCla(file, ring) // magic, lengths, sha256 of the payload, Ed25519 signature
console.log(JSON.stringify({ ok: true, p0: cla.p0, seq: cla.seq, payload: cla.payload.toString() }))

// One flipped byte anywhere and the file is refused with a stable code.
const tampered = Buffer.from(file)
tampered[tampered.length - 70] ^= 1
try {
  verifyCla(tampered, ring)
  console.log(JSON.stringify({ tampered: 'accepted' }))
  process.exitCode = 1
} catch (err) {
  if (!isClavitorError(err)) throw err
  console.log(JSON.stringify({ tampered: 'refused', code: err.code }))
}
