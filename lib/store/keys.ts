// Ed25519 keys in the raw 32-byte form tweetnacl uses (seed for the private key, point for
// the public key), turned into node:crypto KeyObjects by their fixed DER prefixes.
// A key id is the first 16 bytes of sha256(public key), as 32 lowercase hex characters.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto'
import { claError } from '../errors.js'

const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex')
const SPKI_ED25519_PREFIX = Buffer.from('302a300506032b6570032100', 'hex')

export const KEY_ID_BYTES = 16

/** An Ed25519 private key in raw and node:crypto form, with its key id. */
export interface SigningKey {
  /** Raw 32-byte seed (tweetnacl: nacl.sign.keyPair.fromSeed). */
  seed: Buffer
  /** Raw 32-byte public key. */
  publicKey: Buffer
  /** First 16 bytes of sha256(publicKey), as 32 lowercase hex characters. */
  keyId: string
  /** The private key as a node:crypto KeyObject, for sign(). */
  privateKeyObject: KeyObject
}

/** An Ed25519 public key a store accepts signatures from, with its key id. */
export interface TrustedKey {
  /** First 16 bytes of sha256(publicKey), as 32 lowercase hex characters. */
  keyId: string
  /** Raw 32-byte public key. */
  publicKey: Buffer
  /** The public key as a node:crypto KeyObject, for verify(). */
  keyObject: KeyObject
}

/** Trusted public keys by key id. */
export type KeyRing = ReadonlyMap<string, TrustedKey>

/** The key id of a raw public key: first 16 bytes of its sha256, as 32 lowercase hex characters. */
export function keyIdOf(publicKey: Buffer): string {
  return createHash('sha256').update(publicKey).digest().subarray(0, KEY_ID_BYTES).toString('hex')
}

/**
 * The signing key of a raw 32-byte Ed25519 seed. Throws CLA_ERR_INVALID_OPTION when the seed is not
 * 32 bytes.
 */
export function signingKeyFromSeed(seed: Buffer): SigningKey {
  if (seed.length !== 32) {
    throw claError('CLA_ERR_INVALID_OPTION', `an Ed25519 seed is 32 raw bytes; got ${seed.length}`)
  }
  const privateKeyObject = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]),
    format: 'der',
    type: 'pkcs8',
  })
  const spki = createPublicKey(privateKeyObject).export({ format: 'der', type: 'spki' })
  const publicKey = Buffer.from(spki.subarray(SPKI_ED25519_PREFIX.length))
  return { seed: Buffer.from(seed), publicKey, keyId: keyIdOf(publicKey), privateKeyObject }
}

/** A new random Ed25519 signing key. */
export function generateSigningKey(): SigningKey {
  const { privateKey } = generateKeyPairSync('ed25519')
  const der = privateKey.export({ format: 'der', type: 'pkcs8' })
  return signingKeyFromSeed(Buffer.from(der.subarray(PKCS8_ED25519_PREFIX.length)))
}

/**
 * The trusted key of a raw 32-byte Ed25519 public key. Throws CLA_ERR_INVALID_OPTION when it is not
 * 32 bytes.
 */
export function trustedKeyFromRaw(publicKey: Buffer): TrustedKey {
  if (publicKey.length !== 32) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `an Ed25519 public key is 32 raw bytes; got ${publicKey.length}`,
    )
  }
  const keyObject = createPublicKey({
    key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]),
    format: 'der',
    type: 'spki',
  })
  return { keyId: keyIdOf(publicKey), publicKey: Buffer.from(publicKey), keyObject }
}

/**
 * Reads a public key file's bytes: 32 raw bytes, or 64 hex characters (whitespace around
 * them ignored). Anything else is CLA_ERR_INVALID_OPTION.
 */
export function parsePublicKeyFile(bytes: Buffer, name = 'key file'): Buffer {
  if (bytes.length === 32) return Buffer.from(bytes)
  const text = bytes.toString('latin1').trim()
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, 'hex')
  throw claError(
    'CLA_ERR_INVALID_OPTION',
    `${name} must hold an Ed25519 public key as 32 raw bytes or 64 hex characters (got ${bytes.length} bytes)`,
  )
}

/**
 * A key ring (key id → trusted key) of raw 32-byte public keys; duplicates collapse.
 * Throws CLA_ERR_INVALID_OPTION on a key that is not 32 bytes.
 */
export function makeKeyRing(keys: Iterable<Buffer>): Map<string, TrustedKey> {
  const ring = new Map<string, TrustedKey>()
  for (const k of keys) {
    const t = trustedKeyFromRaw(k)
    ring.set(t.keyId, t)
  }
  return ring
}

// ---------------------------------------------------------------------------------------
// Statements: detached Ed25519 signatures by the store's key over `domain + body`, for the
// core's own records that must be told apart from a .cla (whose signature covers any
// payload a vault sent). A domain is lowercase ASCII ending in one "\n" and nothing else
// ("clavitor audit anchor v2\n"): the signed bytes then never start with the .cla magic
// "CLAV", so a .cla signature never passes as a statement nor a statement as a .cla, and
// no domain is a prefix of another domain's bytes.

const DOMAIN_RE = /^[a-z][a-z0-9 .:/-]{0,62}\n$/

/** The exact bytes a statement signature covers; refuses a domain outside the rule above. */
export function statementBytes(domain: string, body: Buffer): Buffer {
  if (!DOMAIN_RE.test(domain)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `a statement domain is lowercase ASCII (letter first, at most 63 characters) ending in "\\n"; got ${JSON.stringify(domain)}`,
    )
  }
  return Buffer.concat([Buffer.from(domain, 'ascii'), body])
}

/** The 64-byte Ed25519 signature of `domain + body` by `key`. */
export function signStatement(key: SigningKey, domain: string, body: Buffer): Buffer {
  return sign(null, statementBytes(domain, body), key.privateKeyObject)
}

/** True when `signature` is a signature of `domain + body` by the trusted key `keyId`. */
export function verifyStatement(
  ring: KeyRing,
  keyId: string,
  domain: string,
  body: Buffer,
  signature: Buffer,
): boolean {
  const key = ring.get(keyId)
  if (!key || signature.length !== 64) return false
  return verify(null, statementBytes(domain, body), key.keyObject, signature)
}
