// The one decision for every request on the POP API: is this a registered POP, talking
// over its own certificate, signing with its own key, inside the time window, with a
// fresh nonce, from an allowed address, with a valid token?
//
// authenticatePopRequest (PopAuthenticator.authenticate) checks, in this order, and stops
// at the first failure:
//   1. IP: the address is in some live POP's allowlist (before any other work)
//   2. path: no traversal, no encoded separators, under /pop/v1/
//   3. client certificate: present, issued by our CA, in its validity period, not revoked
//      (the CRL file is re-read when it changes, per request, so revoking also ends open
//      keep-alive connections), SAN names a live POP, fingerprint bound to that POP
//   4. IP in THAT POP's allowlist
//   5. RFC 9421 signature: keyid = that POP id, its Ed25519 key, required components
//   6. content-digest against the bytes received
//   7. time window on `created`, then the nonce (pop_nonces)
//   8. access token (Bearer, HMAC, bound to the certificate fingerprint) unless the route
//      is one of the token routes
// Every decision, allowed or refused, is appended to the audit log (kind pop.request)
// with the reason code; if that write fails the request is refused (fail closed).
// Refusals before any credential (an address at connect, a socket that never finished
// TLS) are counted and summarized instead (lib/auth/refusal-guard.ts), and an address
// past its refusal limit is refused before authentication until its window ends.
//
// Reason codes (events.reason, error details.reason): ip_not_allowed, bad_path,
// cert_missing, cert_untrusted, cert_expired, cert_revoked, cert_no_pop, pop_unknown,
// cert_not_bound, sig_* and digest_* (lib/auth/http-signature.ts), sig_keyid_mismatch,
// ts_too_old, ts_in_future, nonce_invalid, nonce_replayed, token_missing, token_invalid,
// token_expired, token_wrong_cert, internal_error.
import { systemClock, type Clock } from '../clock.js'
import { X509Certificate } from 'node:crypto'
import type { Db } from '../db/open.js'
import { appendEvent, type AuditEventInput } from '../audit/log.js'
import { ClavitorError, claError } from '../errors.js'
import { ipAllowed, normalizeIp, parseAllowlist, type Cidr } from './allowlist.js'
import type { Statement } from 'better-sqlite3'
import { CrlCache, certFingerprint, popIdFromCert } from './ca.js'
import {
  verifyContentDigest,
  verifyRequestSignature,
  type Headers,
  type VerifiedSignature,
} from './http-signature.js'
import { getPop, listPops, popPublicKey, type PopRecord } from './pops.js'
import { NonceStore, checkWindow, type WindowOptions } from './replay.js'
import { verifyAccessToken, type AccessClaims } from './tokens.js'
import { RefusalGuard } from './refusal-guard.js'

export interface PopAuthOptions {
  db: Db
  /** Our CA certificate (PEM). */
  caCertPem: string
  /** The CRL file (PEM) written by `clavitor ca revoke|crl`. */
  crlFile: string
  /** Current token secrets (first signs; all verify). */
  tokenSecrets: () => readonly Buffer[]
  window?: WindowOptions
  /** The clock (lib/clock.ts). Default the system's. */
  clock?: Clock
  /**
   * Refusals counted instead of audited, and the per-address refusal limit
   * (lib/auth/refusal-guard.ts). Default: a guard with its defaults, without a metric.
   */
  refusals?: RefusalGuard
  /**
   * Told the reason of each refusal audited as a `pop.request` row, once the row is written
   * (the metric clavitor_auth_refusals_total). Must not throw.
   */
  onRefused?: (reason: string) => void
}

/** What Node's TLS socket gives (getPeerCertificate()) or any object with the DER. */
export type PeerCertificate = { raw?: Buffer | Uint8Array } | null | undefined

export interface PopRequestInput {
  method: string
  /** Path as received, without the query. */
  path: string
  /** Query as received, without "?" ("" if none). */
  query: string
  authority: string
  headers: Headers
  /** The exact bytes of the body received (empty for none). */
  rawBody: Uint8Array
  ip: string | undefined
  peerCertificate: PeerCertificate
  /** Skip the access-token check (the token routes themselves). Default false. */
  tokenOptional?: boolean
}

export interface PopAuthResult {
  popId: string
  fingerprint: string
  signature: VerifiedSignature
  token: AccessClaims | undefined
}

function refuse(
  code: ClavitorError['code'],
  reason: string,
  message: string,
  cause?: unknown,
): ClavitorError {
  return claError(code, message, { cause, details: { reason } })
}

export function reasonOf(err: unknown): string {
  if (err instanceof ClavitorError) {
    const r = err.details?.reason
    return typeof r === 'string' ? r : err.code
  }
  return 'internal_error'
}

const PATH_RE = /^\/pop\/v1\/[A-Za-z0-9._~\-/]*$/

export class PopAuthenticator {
  readonly db: Db
  private readonly ca: X509Certificate
  private readonly crl: CrlCache
  private readonly nonces: NonceStore
  private readonly now: () => number
  private popsVersion: Statement | null = null
  private nets: { v: unknown; list: Cidr[] } | null = null
  /** Times the live POPs' allowlists were read and parsed (once per registry change). */
  allowlistLoads = 0
  /** What is counted instead of audited, and who is over the refusal limit. */
  readonly refusals: RefusalGuard

  constructor(readonly opts: PopAuthOptions) {
    this.db = opts.db
    this.ca = new X509Certificate(opts.caCertPem)
    this.crl = new CrlCache(opts.crlFile)
    this.nonces = new NonceStore(opts.db)
    const clock = opts.clock ?? systemClock
    this.now = () => clock.now()
    this.refusals = opts.refusals ?? new RefusalGuard({ db: opts.db, clock })
  }

  /**
   * Appends an audit row; a failure becomes CLA_ERR_AUDIT_WRITE_FAILED (refuse). A refused
   * `pop.request` row, once written, is also told to `onRefused`.
   */
  audit(ev: AuditEventInput): void {
    appendEvent(this.db, ev)
    if (ev.kind === 'pop.request' && ev.outcome === 'refused')
      this.opts.onRefused?.(ev.reason ?? 'unknown')
  }

  /**
   * Step 1 alone, cheap, for a new connection before its TLS handshake. Returns null
   * when the connection may go on, else the reason to drop it: `ip_not_allowed` (an
   * address no live POP may use) or `refusals_limited` (an address over its refusal
   * limit, lib/auth/refusal-guard.ts). Such drops are counted and summarized, never
   * audited one by one: no credential was presented.
   */
  screenConnection(ip: string | undefined): 'ip_not_allowed' | 'refusals_limited' | null {
    let allowed = false
    try {
      allowed = this.anyPopAllows(ip)
    } catch {
      allowed = false
    }
    const reason = !allowed
      ? 'ip_not_allowed'
      : this.refusals.limitedFor(ip) > 0
        ? 'refusals_limited'
        : null
    if (reason) this.refusals.count(ip, 'connect', reason)
    return reason
  }

  /**
   * A certificate refused by the TLS handshake (missing, another CA, expired, revoked):
   * a credential was presented, so it has its own audit row, with the address recorded
   * when the connection opened, and counts towards that address's refusal limit.
   * Throws CLA_ERR_AUDIT_WRITE_FAILED if the row cannot be written.
   */
  refuseCertificate(
    ip: string | undefined,
    reason: string,
    detail: { code?: string | null; fingerprint?: string },
  ): void {
    const addr = normalizeIp(ip) ?? ip
    this.refusals.noteAudited(addr)
    this.audit({
      kind: 'pop.request',
      actor: 'unknown',
      outcome: 'refused',
      reason,
      ip: addr,
      fingerprint: detail.fingerprint,
      data: { stage: 'tls', code: detail.code ?? null },
    })
  }

  /**
   * A request refused before any authentication decision on a socket whose certificate
   * TLS accepted (a request timeout, bytes that are not HTTP): audited, and counted
   * towards the address's refusal limit.
   */
  refuseUnauthenticated(r: { ip: string | undefined; reason: string; code: string | null }): void {
    const ip = normalizeIp(r.ip) ?? r.ip
    this.refusals.noteAudited(ip)
    this.audit({
      kind: 'pop.request',
      actor: 'unknown',
      outcome: 'refused',
      reason: r.reason,
      ip,
      data: { code: r.code },
    })
  }

  /**
   * The row of a request answered without an authentication decision of its own (a 413,
   * a 404 before the check, a rate limit): a refusal (status >= 400) also counts towards
   * the address's refusal limit unless `counted` is false.
   */
  auditAnswer(a: {
    status: number
    reason: string
    popId: string | undefined
    ip: string | undefined
    route: string
    fingerprint: string | undefined
    counted?: boolean
  }): void {
    const ip = normalizeIp(a.ip) ?? a.ip
    if (a.status >= 400 && a.counted !== false) this.refusals.noteAudited(ip)
    this.audit({
      kind: 'pop.request',
      actor: a.popId ?? 'unknown',
      outcome: a.status < 400 ? 'allowed' : 'refused',
      reason: a.reason,
      ip,
      route: a.route.slice(0, 300),
      fingerprint: a.fingerprint,
    })
  }

  private anyPopAllows(ip: string | undefined): boolean {
    return ipAllowed(ip, this.liveNets())
  }

  /**
   * Every live POP's allowlist, parsed, kept until the registry changes (its version, bumped
   * by triggers on \`pops\` from any process: migration 11). The screen runs per connection and
   * per request; reading every POP's row each time cost 17 ms at 10,000 POPs.
   */
  private liveNets(): Cidr[] {
    const v = (this.popsVersion ??= this.db.prepare('SELECT v FROM pops_version').pluck()).get()
    if (this.nets === null || this.nets.v !== v) {
      this.allowlistLoads++
      this.nets = { v, list: listPops(this.db).flatMap((p) => parseAllowlist(p.allowlist)) }
    }
    return this.nets.list
  }

  /** The decision. Resolves with the POP, or throws a ClavitorError with details.reason. */
  async authenticate(req: PopRequestInput): Promise<PopAuthResult> {
    const ip = normalizeIp(req.ip) ?? req.ip
    const route = `${req.method.toUpperCase()} ${req.path}`.slice(0, 300)
    const ctx: { actor: string; fingerprint: string | undefined } = {
      actor: 'unknown',
      fingerprint: undefined,
    }
    try {
      const result = await this.decide(req, ctx)
      this.audit({
        kind: 'pop.request',
        actor: result.popId,
        outcome: 'allowed',
        ip,
        route,
        fingerprint: result.fingerprint,
      })
      return result
    } catch (err) {
      if (err instanceof ClavitorError && err.code === 'CLA_ERR_AUDIT_WRITE_FAILED') throw err
      const reason = reasonOf(err)
      this.refusals.noteAudited(ip)
      // write the refusal first; if that fails, the audit error is what the caller sees
      this.audit({
        kind: 'pop.request',
        actor: ctx.actor,
        outcome: 'refused',
        reason,
        ip,
        route,
        fingerprint: ctx.fingerprint,
        data: { code: err instanceof ClavitorError ? err.code : 'CLA_ERR_INTERNAL' },
      })
      if (err instanceof ClavitorError) throw err
      throw claError('CLA_ERR_INTERNAL', 'authentication failed unexpectedly', {
        cause: err,
        details: { reason },
      })
    }
  }

  private async decide(
    req: PopRequestInput,
    ctx: { actor: string; fingerprint: string | undefined },
  ): Promise<PopAuthResult> {
    const nowSec = Math.floor(this.now() / 1000)
    // 1. address
    if (!this.anyPopAllows(req.ip)) {
      throw refuse(
        'CLA_ERR_AUTH_IP_NOT_ALLOWED',
        'ip_not_allowed',
        `address ${req.ip ?? '?'} is not allowed`,
      )
    }
    // 2. path
    if (
      !PATH_RE.test(req.path) ||
      req.path.includes('..') ||
      req.path.includes('//') ||
      req.path.length > 256
    ) {
      throw refuse('CLA_ERR_INVALID_INPUT', 'bad_path', 'the path is not a POP API path')
    }
    // 3. certificate
    const raw = req.peerCertificate?.raw
    if (!raw || raw.length === 0)
      throw refuse('CLA_ERR_AUTH_CERT', 'cert_missing', 'a client certificate is required')
    let cert: X509Certificate
    try {
      cert = new X509Certificate(Buffer.from(raw))
    } catch (cause) {
      throw refuse(
        'CLA_ERR_AUTH_CERT',
        'cert_untrusted',
        'the client certificate cannot be parsed',
        cause,
      )
    }
    const fingerprint = certFingerprint(Buffer.from(raw))
    ctx.fingerprint = fingerprint
    if (!cert.checkIssued(this.ca) || !cert.verify(this.ca.publicKey)) {
      throw refuse(
        'CLA_ERR_AUTH_CERT',
        'cert_untrusted',
        'the client certificate is not issued by our CA',
      )
    }
    const named = popIdFromCert(cert)
    if (named) ctx.actor = named // the CA vouches for the name from here on
    const now = this.now()
    if (Date.parse(cert.validFrom) > now || Date.parse(cert.validTo) < now) {
      throw refuse(
        'CLA_ERR_AUTH_CERT',
        'cert_expired',
        'the client certificate is outside its validity period',
      )
    }
    if (await this.crl.isRevoked(cert.serialNumber)) {
      throw refuse('CLA_ERR_AUTH_CERT', 'cert_revoked', 'the client certificate is revoked')
    }
    if (!named)
      throw refuse('CLA_ERR_AUTH_CERT', 'cert_no_pop', 'the client certificate names no POP')
    const pop: PopRecord | undefined = getPop(this.db, named)
    if (!pop) throw refuse('CLA_ERR_AUTH_CERT', 'pop_unknown', `POP ${named} is not registered`)
    if (pop.certFingerprint !== fingerprint) {
      throw refuse(
        'CLA_ERR_AUTH_CERT',
        'cert_not_bound',
        `this certificate is not the one registered for POP ${named}`,
      )
    }
    // 4. this POP's addresses
    if (!ipAllowed(req.ip, parseAllowlist(pop.allowlist))) {
      throw refuse(
        'CLA_ERR_AUTH_IP_NOT_ALLOWED',
        'ip_not_allowed',
        `address ${req.ip ?? '?'} is not allowed for POP ${named}`,
      )
    }
    // 5. signature
    const sig = verifyRequestSignature(req, {
      resolveKey: (keyid) => {
        if (keyid === pop.id) return popPublicKey(pop)
        if (getPop(this.db, keyid)) {
          throw refuse(
            'CLA_ERR_AUTH_SIGNATURE',
            'sig_keyid_mismatch',
            `keyid ${keyid} does not match the certificate (POP ${pop.id})`,
          )
        }
        return undefined
      },
      now: nowSec,
    })
    // 6. digest of the bytes received
    verifyContentDigest(req.headers, req.rawBody)
    // 7. window, then nonce
    checkWindow(sig.created!, nowSec, this.opts.window)
    const w = this.opts.window ?? {}
    this.nonces.use(
      pop.id,
      sig.nonce!,
      sig.created! + (w.maxAgeSec ?? 300) + (w.maxSkewSec ?? 30) + 1,
      nowSec,
    )
    // 8. token
    let token: AccessClaims | undefined
    if (!req.tokenOptional) {
      const auth = req.headers['authorization'] ?? req.headers['Authorization']
      const m = typeof auth === 'string' ? /^Bearer ([A-Za-z0-9._-]+)$/.exec(auth) : null
      if (!m)
        throw refuse(
          'CLA_ERR_AUTH_TOKEN',
          'token_missing',
          'an access token is required (Authorization: Bearer …)',
        )
      token = verifyAccessToken(this.opts.tokenSecrets(), m[1]!, {
        popId: pop.id,
        fingerprint,
        nowSec,
      })
    }
    return { popId: pop.id, fingerprint, signature: sig, token }
  }
}

/** The single framework-agnostic entry: see PopAuthenticator.authenticate. */
export function authenticatePopRequest(
  auth: PopAuthenticator,
  req: PopRequestInput,
): Promise<PopAuthResult> {
  return auth.authenticate(req)
}
