// P0: the public, PRF-derived identifier of a device credential. Lowercase hex, even
// length, 32 to 128 characters. Anything else is refused, never normalised: a p0 becomes
// a folder name, so no path tricks ('..', '/', NUL, whitespace, upper case) get through.
//
// Reserved P0s hold the core's own records in the same WORM store (the audit anchors).
// The store itself accepts them (its writer puts the anchors there); every entry point
// where a P0 comes from outside (a vault's registration or download, a POP lookup) checks
// with validateClientP0, so no vault can place or read a file there.
import { claError } from '../errors.js'

/** Fewest hex characters in a P0 (16 bytes). */
export const P0_MIN_HEX = 32
/** Most hex characters in a P0 (64 bytes). */
export const P0_MAX_HEX = 128
const P0_RE = /^(?:[0-9a-f]{2}){16,64}$/

/** True when `p0` is a valid P0 (lowercase hex, even length, 32..128 characters). */
export function isValidP0(p0: unknown): p0 is string {
  return typeof p0 === 'string' && P0_RE.test(p0)
}

/** Returns `p0` unchanged when valid, else throws CLA_ERR_INVALID_P0. */
export function validateP0(p0: unknown): string {
  if (isValidP0(p0)) return p0
  const shown =
    typeof p0 === 'string' ? JSON.stringify(p0.length > 40 ? p0.slice(0, 40) + '…' : p0) : typeof p0
  throw claError(
    'CLA_ERR_INVALID_P0',
    `p0 must be lowercase hex of even length, ${P0_MIN_HEX} to ${P0_MAX_HEX} characters; got ${shown}`,
    { details: { field: 'p0' } },
  )
}

/** The P0 of the audit anchors (lib/audit/anchor.ts): 64 zeros. */
export const AUDIT_ANCHOR_P0 = '0'.repeat(64)

/** P0s the store keeps for the core's own records; refused wherever a P0 enters from outside. */
export const RESERVED_P0S: ReadonlySet<string> = new Set([AUDIT_ANCHOR_P0])

/**
 * validateP0, and refuses a reserved P0 with CLA_ERR_P0_RESERVED. The one check for every
 * P0 that enters from outside the core: registration, the credentials API's reads, POP
 * lookups. A device P0 is PRF output, so meeting a reserved one means a broken derivation
 * or a deliberate attempt.
 */
export function validateClientP0(p0: unknown): string {
  const valid = validateP0(p0)
  if (RESERVED_P0S.has(valid)) {
    throw claError(
      'CLA_ERR_P0_RESERVED',
      `p0 ${valid.slice(0, 8)}… is reserved for the core's own records (audit anchors) and is never a device P0; derive the P0 from the device's PRF output`,
      { details: { field: 'p0' } },
    )
  }
  return valid
}

/** The shard folder of a p0: its first two hex characters. */
export function shardOf(p0: string): string {
  return p0.slice(0, 2)
}
