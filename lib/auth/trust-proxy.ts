// Which peers may tell us the client's address (X-Forwarded-For) and scheme
// (X-Forwarded-Proto). docs/operations.md puts the core's public app behind a TLS proxy:
// without this the admin cookie never gets `Secure`, every client shares the proxy's
// rate-limit bucket, and audit rows record the proxy's address. Trusting every peer would
// let any client that reaches the port directly forge its address, so a value must name
// the proxy (addresses, CIDRs, proxy-addr's keywords). Hop counts are refused: Fastify 5
// cannot check the nearest peer with them and trusts no header at all.
import { claError } from '../errors.js'
import { parseAllowlist } from './allowlist.js'

/** What Fastify's `trustProxy` receives: off, or the proxies' addresses. */
export type TrustProxy = false | string[]

/** proxy-addr's named ranges (what Fastify uses under `trustProxy`). */
const KEYWORDS = new Set(['loopback', 'linklocal', 'uniquelocal'])

/**
 * Parses `--trust-proxy` / `CLAVITOR_TRUST_PROXY`: `off` (the default) or a
 * comma-separated list of addresses, CIDRs and the keywords `loopback`, `linklocal`,
 * `uniquelocal`. Every proxy on the path must be listed.
 */
export function parseTrustProxy(value: string | undefined): TrustProxy {
  const v = (value ?? '').trim()
  if (v === '' || v === 'off' || v === 'false' || v === 'no') return false
  if (v === 'true' || v === 'on' || v === 'yes' || v === '*') {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      '--trust-proxy must name the proxy (e.g. 127.0.0.1, loopback or 10.0.0.0/8): trusting every peer lets any client forge X-Forwarded-For',
    )
  }
  if (/^\d+$/.test(v)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `--trust-proxy takes the proxy's address, not a hop count (got ${v}): e.g. 127.0.0.1 or loopback`,
    )
  }
  const entries = v.split(',').map((s) => s.trim())
  if (entries.some((s) => s === ''))
    throw claError('CLA_ERR_INVALID_OPTION', `--trust-proxy has an empty entry: "${v}"`)
  parseAllowlist(entries.filter((s) => !KEYWORDS.has(s))) // throws CLA_ERR_INVALID_OPTION
  return entries
}
