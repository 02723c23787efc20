// P0: the public, PRF-derived identifier of a device credential. Lowercase hex, even
// length, 32 to 128 characters. Anything else is refused, never normalised: a p0 becomes
// a folder name, so no path tricks ('..', '/', NUL, whitespace, upper case) get through.
import { claError } from '../errors.js'

export const P0_MIN_HEX = 32
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

/** The shard folder of a p0: its first two hex characters. */
export function shardOf(p0: string): string {
  return p0.slice(0, 2)
}
