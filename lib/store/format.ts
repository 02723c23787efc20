// The .cla container: a self-describing, signed, immutable blob. Byte-level spec and a
// test vector in docs/format.md (test/lib/store/format.test.ts checks the vector).
//
//   off  len        field
//   0    4          magic "CLAV" (43 4c 41 56)
//   4    1          version = 1
//   5    1          p0_len: length of p0 in bytes (16..64; the hex p0 is 2×p0_len chars)
//   6    2          reserved = 0 (u16 BE)
//   8    8          created_at: µs since the Unix epoch (u64 BE)
//   16   8          seq: sequence number (u64 BE)
//   24   8          payload_size in bytes (u64 BE)
//   32   32         sha256 of the payload
//   64   16         key_id: first 16 bytes of sha256(signer's raw Ed25519 public key)
//   80   p0_len     p0 (raw bytes; hex-decoded)
//   …    size       payload (opaque)
//   …    64         Ed25519 signature over every byte before it
import { createHash, sign, verify } from 'node:crypto'
import { claError } from '../errors.js'
import { KEY_ID_BYTES, type KeyRing, type SigningKey } from './keys.js'
import { validateP0 } from './p0.js'

/** The 4 bytes every .cla file starts with: "CLAV". */
export const CLA_MAGIC = Buffer.from('CLAV', 'latin1')
/** The only .cla format version written and read. */
export const CLA_VERSION = 1
/** Bytes of the fixed header before the p0 (magic to key_id). */
export const CLA_HEADER_FIXED = 80
/** Bytes of the Ed25519 signature that ends every .cla file. */
export const CLA_SIGNATURE_BYTES = 64

/** The header fields of a .cla file, as numbers and lowercase hex. */
export interface ClaHeader {
  /** Format version (always {@link CLA_VERSION}). */
  version: number
  p0: string
  /** µs since the Unix epoch. */
  createdAt: number
  /** The store's sequence number. */
  seq: number
  /** Payload bytes. */
  size: number
  /** sha256 of the payload, lowercase hex. */
  sha256: string
  /** Id of the signing key (32 hex characters). */
  keyId: string
}

/**
 * A parsed .cla file: its header plus views (not copies) of the payload, signed bytes and
 * signature.
 */
export interface DecodedCla extends ClaHeader {
  /** Whole file bytes. */
  fileSize: number
  /** The payload bytes (a subarray of the file buffer). */
  payload: Buffer
  /** Every byte the signature covers. */
  signed: Buffer
  /** The 64-byte Ed25519 signature. */
  signature: Buffer
}

/** What {@link encodeCla} needs to build and sign a .cla file. */
export interface EncodeInput {
  p0: string
  /** µs since the Unix epoch; a non-negative safe integer. */
  createdAt: number
  /** The store's sequence number; a non-negative safe integer. */
  seq: number
  payload: Buffer
  /** The key that signs the file; its id goes into the header. */
  key: SigningKey
}

function checkU53(name: string, v: number): void {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw claError('CLA_ERR_INVALID_INPUT', `${name} must be a non-negative safe integer; got ${v}`)
  }
}

/** Builds the whole signed file. */
export function encodeCla(input: EncodeInput): Buffer {
  return encodeClaWithDigest(input).bytes
}

/**
 * encodeCla, also returning the payload's sha256 (hex) it wrote into the header, so a
 * writer can make the index row without decoding the file it just built.
 */
export function encodeClaWithDigest(input: EncodeInput): { bytes: Buffer; sha256: string } {
  const p0 = validateP0(input.p0)
  checkU53('createdAt', input.createdAt)
  checkU53('seq', input.seq)
  const p0Bytes = Buffer.from(p0, 'hex')
  const size = input.payload.length
  const total = CLA_HEADER_FIXED + p0Bytes.length + size + CLA_SIGNATURE_BYTES
  const buf = Buffer.allocUnsafe(total)
  CLA_MAGIC.copy(buf, 0)
  buf.writeUInt8(CLA_VERSION, 4)
  buf.writeUInt8(p0Bytes.length, 5)
  buf.writeUInt16BE(0, 6)
  buf.writeBigUInt64BE(BigInt(input.createdAt), 8)
  buf.writeBigUInt64BE(BigInt(input.seq), 16)
  buf.writeBigUInt64BE(BigInt(size), 24)
  const digest = createHash('sha256').update(input.payload).digest()
  digest.copy(buf, 32)
  Buffer.from(input.key.keyId, 'hex').copy(buf, 64)
  p0Bytes.copy(buf, CLA_HEADER_FIXED)
  input.payload.copy(buf, CLA_HEADER_FIXED + p0Bytes.length)
  const signedEnd = total - CLA_SIGNATURE_BYTES
  const sig = sign(null, buf.subarray(0, signedEnd), input.key.privateKeyObject)
  sig.copy(buf, signedEnd)
  return { bytes: buf, sha256: digest.toString('hex') }
}

function bad(message: string, name?: string): never {
  throw claError('CLA_ERR_BAD_FORMAT', name ? `${name}: ${message}` : message, {
    details: name ? { file: name } : undefined,
  })
}

/** Parses and checks the structure (magic, version, lengths). No hash or signature check. */
export function decodeCla(buf: Buffer, name?: string): DecodedCla {
  if (buf.length < CLA_HEADER_FIXED + 16 + CLA_SIGNATURE_BYTES)
    bad(`too short for a .cla file (${buf.length} bytes)`, name)
  if (!buf.subarray(0, 4).equals(CLA_MAGIC)) bad('bad magic (not a .cla file)', name)
  const version = buf.readUInt8(4)
  if (version !== CLA_VERSION) bad(`unsupported .cla version ${version}`, name)
  const p0Len = buf.readUInt8(5)
  if (p0Len < 16 || p0Len > 64) bad(`p0 length ${p0Len} bytes out of range 16..64`, name)
  if (buf.readUInt16BE(6) !== 0) bad('reserved header bytes are not zero', name)
  const createdAt = buf.readBigUInt64BE(8)
  const seq = buf.readBigUInt64BE(16)
  const size = buf.readBigUInt64BE(24)
  const max = BigInt(Number.MAX_SAFE_INTEGER)
  if (createdAt > max || seq > max || size > max) bad('header integer out of range', name)
  const expected = BigInt(CLA_HEADER_FIXED + p0Len + CLA_SIGNATURE_BYTES) + size
  if (expected !== BigInt(buf.length))
    bad(`file is ${buf.length} bytes, header says ${expected}`, name)
  const payloadStart = CLA_HEADER_FIXED + p0Len
  const signedEnd = buf.length - CLA_SIGNATURE_BYTES
  return {
    version,
    p0: buf.subarray(CLA_HEADER_FIXED, payloadStart).toString('hex'),
    createdAt: Number(createdAt),
    seq: Number(seq),
    size: Number(size),
    sha256: buf.subarray(32, 64).toString('hex'),
    keyId: buf.subarray(64, 64 + KEY_ID_BYTES).toString('hex'),
    fileSize: buf.length,
    payload: buf.subarray(payloadStart, signedEnd),
    signed: buf.subarray(0, signedEnd),
    signature: buf.subarray(signedEnd),
  }
}

/**
 * Decodes and fully verifies a file: structure, payload sha256, and an Ed25519 signature by
 * a key in `trusted`. Throws CLA_ERR_BAD_FORMAT / BAD_HASH / UNKNOWN_KEY / BAD_SIGNATURE.
 */
export function verifyCla(buf: Buffer, trusted: KeyRing, name?: string): DecodedCla {
  const { d, key } = checkBeforeSignature(buf, trusted, name)
  if (!verify(null, d.signed, key.keyObject, d.signature)) throw badSignature(d, name)
  return d
}

/**
 * verifyCla with the Ed25519 check on libuv's thread pool (crypto.verify with a callback):
 * a batch of files verifies on every core while the event loop goes on (a POP's ingest).
 * Same checks, same errors.
 */
export function verifyClaAsync(buf: Buffer, trusted: KeyRing, name?: string): Promise<DecodedCla> {
  let checked: ReturnType<typeof checkBeforeSignature>
  try {
    checked = checkBeforeSignature(buf, trusted, name)
  } catch (err) {
    return Promise.reject(err)
  }
  const { d, key } = checked
  return new Promise((resolve, reject) => {
    verify(null, d.signed, key.keyObject, d.signature, (err, ok) => {
      if (err) reject(err)
      else if (!ok) reject(badSignature(d, name))
      else resolve(d)
    })
  })
}

/** Structure, payload sha256 and a trusted key id: everything but the signature itself. */
function checkBeforeSignature(buf: Buffer, trusted: KeyRing, name?: string) {
  const d = decodeCla(buf, name)
  const where = name ? `${name}: ` : ''
  const details = name ? { file: name } : undefined
  const digest = createHash('sha256').update(d.payload).digest('hex')
  if (digest !== d.sha256) {
    throw claError(
      'CLA_ERR_BAD_HASH',
      `${where}payload sha256 ${digest} differs from header ${d.sha256}`,
      { details },
    )
  }
  const key = trusted.get(d.keyId)
  if (!key) {
    throw claError(
      'CLA_ERR_UNKNOWN_KEY',
      `${where}signed by key ${d.keyId}, which is not trusted here`,
      { details },
    )
  }
  return { d, key }
}

function badSignature(d: DecodedCla, name?: string) {
  return claError(
    'CLA_ERR_BAD_SIGNATURE',
    `${name ? `${name}: ` : ''}Ed25519 signature does not verify with key ${d.keyId}`,
    { details: name ? { file: name } : undefined },
  )
}

/** The file name of a blob: `{created_at, 16 digits}_{16 hex random}.cla`. */
export function blobFileName(createdAt: number, random: string): string {
  return `${String(createdAt).padStart(16, '0')}_${random}.cla`
}

/**
 * A blob path relative to the store root: `{shard}/{p0}/{created_at, 16+ digits}_{16 hex}.cla`.
 * Groups: shard, p0, created_at, random. {@link parseBlobPath} also checks the shard is the p0's
 * prefix.
 */
export const BLOB_PATH_RE =
  /^([0-9a-f]{2})\/((?:[0-9a-f]{2}){16,64})\/(\d{16,})_([0-9a-f]{16})\.cla$/

/** Splits a relative blob path; undefined when it is not of the store's shape. */
export function parseBlobPath(
  rel: string,
): { shard: string; p0: string; createdAt: number; random: string } | undefined {
  const m = BLOB_PATH_RE.exec(rel)
  if (!m || !m[2]!.startsWith(m[1]!)) return undefined
  return { shard: m[1]!, p0: m[2]!, createdAt: Number(m[3]), random: m[4]! }
}
