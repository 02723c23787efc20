// Vault API keys: the presented form, how it is stored, how it is checked.
//
//   clv_<id>_<secret>     id: 16 lowercase hex (public, the row's primary key)
//                         secret: 64 lowercase hex (32 random bytes), shown once
//
// Only sha256(secret) is stored (vault_api_keys.hash). A presented key is checked by
// hashing its secret and comparing the two digests with timingSafeEqual; an unknown id is
// compared against a dummy digest so both paths cost the same.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { claError } from '../errors.js'

export const API_KEY_PREFIX = 'clv_'
export const API_KEY_PATTERN = /^clv_([0-9a-f]{16})_([0-9a-f]{64})$/
/** The id part alone, for rate limiting before the key is verified. */
const ID_ONLY = /^clv_([0-9a-f]{16})_/

export interface ParsedApiKey {
  id: string
  secret: string
}

/** A fresh key: its id, the full key to show once, and the hash to store. */
export function generateApiKey(): { id: string; key: string; hash: string } {
  const id = randomBytes(8).toString('hex')
  const secret = randomBytes(32).toString('hex')
  return { id, key: `${API_KEY_PREFIX}${id}_${secret}`, hash: hashSecret(secret) }
}

export function hashSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('hex')
}

/** Parses `clv_<id>_<secret>`; throws CLA_ERR_API_KEY_INVALID on any other shape. */
export function parseApiKey(key: string): ParsedApiKey {
  const m = API_KEY_PATTERN.exec(key)
  if (!m) {
    throw claError(
      'CLA_ERR_API_KEY_INVALID',
      'the API key is malformed: expected clv_<16 hex>_<64 hex>',
    )
  }
  return { id: m[1]!, secret: m[2]! }
}

/** The key id of something that looks like a key, without verifying it (rate-limit bucket). */
export function apiKeyIdOf(key: string): string | undefined {
  return ID_ONLY.exec(key)?.[1]
}

const DUMMY_HASH = hashSecret('clavitor-dummy-secret')

/** Constant-time check of a secret against a stored hash (or a dummy when none). */
export function secretMatches(secret: string, storedHash: string | undefined): boolean {
  const a = Buffer.from(hashSecret(secret), 'hex')
  const b = Buffer.from(storedHash ?? DUMMY_HASH, 'hex')
  if (a.length !== b.length) return false
  return timingSafeEqual(a, b) && storedHash !== undefined
}

/** Extracts the key from an `Authorization: Bearer …` header value. */
export function bearerToken(header: string | undefined): string | undefined {
  if (header === undefined) return undefined
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header)
  return m?.[1]
}
