// The POP API: a separate Fastify app on HTTPS with mutual TLS, for POPs only.
// Thin: every decision is lib/auth (PopAuthenticator); this file wires it to Fastify.
//
//  - Before TLS ('connection'): an address in no live POP's allowlist, or one over its
//    refusal limit, is dropped; counted and summarized (lib/auth/refusal-guard.ts), not
//    audited per socket. Nothing else runs for it, and the echo of a socket we dropped
//    ourselves (Node's tlsClientError/clientError for it) is ignored.
//  - TLS: requestCert against our CA and CRL, the verdict read by us at
//    'secureConnection' (lib/auth/tls-refusal.ts): a refused certificate is audited with
//    its real reason (cert_missing, cert_untrusted, cert_expired, cert_revoked) and the
//    address; a socket that never finishes its handshake (handshakeTimeoutMs) is counted.
//  - onRequest: an address over its refusal limit gets 429 before authentication.
//  - preValidation: authenticatePopRequest on the raw bytes (content-digest), then JSON.
//  - preHandler: @fastify/rate-limit keyed on the authenticated POP id (429 + Retry-After).
//  - Routes: POST /pop/v1/token, POST /pop/v1/token/refresh, and the sync plugin
//    (server/routes/sync.ts: GET /pop/v1/feed, its long-poll ?wait=, POST /pop/v1/report)
//    behind the token. A long-poll is one request: authenticated and audited once, when it
//    starts; its wait is capped 10 s below the idle-socket timeout.
//  - Timeouts: headers, request, connection and keep-alive are all bounded.
// Every request that gets an answer has an audit row (refusals before authentication,
// such as an oversized body, are written from onSend).
import { systemClock, type Clock } from '../lib/clock.js'
import { readFileSync, statSync } from 'node:fs'
import type { TLSSocket } from 'node:tls'
import type { Socket } from 'node:net'
import Fastify, {
  type FastifyInstance,
  type FastifyRequest,
  type FastifyServerOptions,
} from 'fastify'
import rateLimit from '@fastify/rate-limit'
import { ClavitorError, claError } from '../lib/errors.js'
import type { Core } from '../lib/core.js'
import { PopAuthenticator, reasonOf } from '../lib/auth/pop-auth.js'
import { normalizeIp } from '../lib/auth/allowlist.js'
import { caPaths, certFingerprint } from '../lib/auth/ca.js'
import { RefusalGuard } from '../lib/auth/refusal-guard.js'
import { certificateRefusal, handshakeRefusal } from '../lib/auth/tls-refusal.js'
import { loadTokenSecrets, tokenSecretPaths } from '../lib/auth/tokens.js'
import { grantTokens, refreshTokens } from '../lib/auth/token-grant.js'
import { syncRoutes } from './routes/sync.js'
import { FEED_MAX_WAIT_S } from '../lib/core-sync/feed.js'
import { requestIdOptions, requestIdPlugin } from '../http/request-id.js'
import { strictBodyOptions } from '../http/strict-body.js'
import { jsonErrorHandler } from '../http/error-handler.js'

/**
 * The TLS material of the POP API: server key and certificate, and our CA and CRL for client
 * certificates.
 */
export interface PopApiTls {
  /** Server private key (PEM). */
  key: string | Buffer
  /** Server certificate (PEM). */
  cert: string | Buffer
  /** Our CA certificate (PEM): the only issuer of client certificates accepted. */
  ca: string | Buffer
  /** Path of the CRL file (PEM); re-read per request when it changes. */
  crlFile: string
}

/**
 * What {@link buildPopApiApp} serves and how; `core` and `tls` are required, the rest have
 * defaults.
 */
export interface PopApiOptions {
  /** The core whose POPs, tokens and feed the API serves. */
  core: Core
  /** Server key and certificate, CA and CRL. */
  tls: PopApiTls
  /** Requests per POP per window. Default 600. */
  rateLimitMax?: number
  /** Rate-limit window, ms. Default 60000. */
  rateLimitWindowMs?: number
  /** Body limit in bytes. Default 1 MiB. */
  bodyLimit?: number
  /** Time to receive the request headers, ms. Default 10000. */
  headersTimeoutMs?: number
  /** Time to receive the whole request, ms. Default 30000. */
  requestTimeoutMs?: number
  /** Idle socket timeout, ms. Default 60000. */
  connectionTimeoutMs?: number
  /** How often Node checks the two timeouts above, ms. Default 1000. */
  connectionsCheckingIntervalMs?: number
  /** Time for the TLS handshake from the first byte of the connection, ms. Default 10000. */
  handshakeTimeoutMs?: number
  /**
   * Refusals counted instead of audited (summary rows every `summaryIntervalMs`, default
   * 60000) and the per-address refusal limit (`maxRefusals` audited refusals per
   * `windowMs`, defaults 60 per 60000), see lib/auth/refusal-guard.ts.
   */
  refusals?: { summaryIntervalMs?: number; maxRefusals?: number; windowMs?: number }
  /** How often the TLS context reloads a changed CRL file for new handshakes, ms. Default 30000. */
  crlReloadMs?: number
  /** Signature window: max age / future skew in seconds. Defaults 300 / 30. */
  window?: { maxAgeSec?: number; maxSkewSec?: number }
  /** Feed long-polls held at once (one per POP; lib/core-sync/feed-wait.ts). Default 10,000. */
  maxFeedWaiters?: number
  /** Mount the sync routes (server/routes/sync.ts). Default true. */
  syncRoutes?: boolean
  /** Extra routes (tests). Registered behind the same authentication. */
  routes?: (app: FastifyInstance) => void | Promise<void>
  /** The clock (lib/clock.ts; tests). Default the system's. */
  clock?: Clock
  /** Fastify options (logger, …); the HTTPS settings and the client error handler stay ours. */
  fastify?: FastifyServerOptions
}

declare module 'fastify' {
  interface FastifyRequest {
    popFingerprint?: string
    rawBody?: Buffer
    /** Set once this request has an audit row. */
    clavitorAudited?: boolean
    clavitorError?: unknown
  }
}

const TOKEN_ROUTES = new Set(['/pop/v1/token', '/pop/v1/token/refresh'])

/** TLS material from a CA folder made by `clavitor ca init` ({data}/ca/). */
export function popApiTlsFromCa(dataDir: string): PopApiTls {
  const p = caPaths(dataDir)
  return {
    key: readFileSync(p.serverKey),
    cert: readFileSync(p.serverCert),
    ca: readFileSync(p.cert),
    crlFile: p.crl,
  }
}

/** Token secrets, re-read when {data}/keys/pop-token.key changes (rotation). */
function tokenSecretLoader(dataDir: string): () => readonly Buffer[] {
  let key = ''
  let cached: Buffer[] = []
  const file = tokenSecretPaths(dataDir).current
  return () => {
    let k = 'missing'
    try {
      const st = statSync(file)
      k = `${st.mtimeMs}:${st.ino}`
    } catch {
      // created by loadTokenSecrets below
    }
    if (k !== key || cached.length === 0) {
      cached = loadTokenSecrets(dataDir)
      const st = statSync(file)
      key = `${st.mtimeMs}:${st.ino}`
    }
    return cached
  }
}

function fileStamp(file: string): string {
  try {
    const st = statSync(file)
    return `${st.mtimeMs}:${st.size}:${st.ino}`
  } catch {
    return ''
  }
}

function splitUrl(url: string): { path: string; query: string } {
  const i = url.indexOf('?')
  return i < 0 ? { path: url, query: '' } : { path: url.slice(0, i), query: url.slice(i + 1) }
}

/**
 * Builds the POP API app (HTTPS with mutual TLS, never listens): token grant and refresh, and
 * the sync routes (feed, report) behind signed requests and a token. Creates the POP token
 * secret in {data}/keys when missing.
 */
export async function buildPopApiApp(opts: PopApiOptions): Promise<FastifyInstance> {
  const { core } = opts
  const db = core.db
  const clock = opts.clock ?? systemClock
  const now = () => clock.now()
  const tokenSecrets = tokenSecretLoader(core.dataDir)
  tokenSecrets() // create the secret now, not on the first request
  const refusals = new RefusalGuard({
    db,
    clock,
    ...opts.refusals,
    onCount: (stage, reason) => core.metrics.refusalsCounted.inc({ stage, reason }),
  })
  const auth = new PopAuthenticator({
    db,
    caCertPem: opts.tls.ca.toString(),
    crlFile: opts.tls.crlFile,
    tokenSecrets,
    window: opts.window,
    clock,
    refusals,
    onRefused: (reason) => core.metrics.authRefusals.inc({ reason }),
  })
  // Sockets whose refusal is already recorded (dropped by us, or a handshake error we
  // handled): Node's later errors for them are echoes, not new events.
  const settled = new WeakSet<object>()
  // Sockets whose client certificate Node accepted: HTTP-level errors on them are audited.
  const authorized = new WeakSet<object>()
  // The address of each raw socket, taken at connect: a TLS socket that fails has none.
  const addressOf = new WeakMap<object, string | undefined>()
  const rawOf = (s: object): object => (s as { _parent?: object })._parent ?? s
  const ipOf = (s: Socket): string | undefined =>
    addressOf.get(rawOf(s)) ?? addressOf.get(s) ?? s.remoteAddress
  const drop = (s: Socket): void => {
    settled.add(s)
    settled.add(rawOf(s))
    s.destroy()
  }
  const headersTimeout = opts.headersTimeoutMs ?? 10_000
  const requestTimeout = opts.requestTimeoutMs ?? 30_000
  const checking = opts.connectionsCheckingIntervalMs ?? 1000
  const app = Fastify({
    ...requestIdOptions,
    ...strictBodyOptions,
    // Fastify leaves these off; a slow client must not hold a socket forever.
    requestTimeout,
    connectionTimeout: opts.connectionTimeoutMs ?? 60_000,
    keepAliveTimeout: 5000,
    bodyLimit: opts.bodyLimit ?? 1024 * 1024,
    ...opts.fastify,
    https: {
      key: opts.tls.key,
      cert: opts.tls.cert,
      ca: opts.tls.ca,
      crl: readFileSync(opts.tls.crlFile),
      requestCert: true,
      // the verdict is read at 'secureConnection' below, so a refusal has its reason
      rejectUnauthorized: false,
      handshakeTimeout: opts.handshakeTimeoutMs ?? 10_000,
      minVersion: 'TLSv1.2',
      // http.Server options honoured by https.Server
      ...({ headersTimeout, requestTimeout, connectionsCheckingInterval: checking } as object),
    },
    clientErrorHandler: (err: Error & { code?: string }, socket: Socket) => {
      if (settled.has(socket) || settled.has(rawOf(socket))) {
        socket.destroy() // already recorded (dropped by us, or its handshake failed)
        return
      }
      const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      const reason = timeout ? 'request_timeout' : 'bad_request'
      const ip = normalizeIp(ipOf(socket))
      try {
        if (authorized.has(socket)) {
          // a certificate holder: this refusal is audited and counts towards its limit
          auth.refuseUnauthenticated({ ip, reason, code: err.code ?? null })
        } else refusals.count(ip, 'http', reason)
      } catch {
        // refused anyway; nothing more we can do for this socket
      }
      if (socket.writable) {
        const status = timeout ? '408 Request Timeout' : '400 Bad Request'
        socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`)
      }
      socket.destroy()
    },
  } as FastifyServerOptions)

  const server = app.server as unknown as import('node:https').Server
  server.headersTimeout = headersTimeout
  server.requestTimeout = requestTimeout

  // New handshakes use the current CRL (a regenerated one before the old expires; new
  // revocations); requests on open connections are checked per request in lib/auth.
  let crlStamp = fileStamp(opts.tls.crlFile)
  const crlTimer = setInterval(() => {
    const stamp = fileStamp(opts.tls.crlFile)
    if (stamp === crlStamp || stamp === '') return
    try {
      server.setSecureContext({
        key: opts.tls.key,
        cert: opts.tls.cert,
        ca: opts.tls.ca,
        crl: readFileSync(opts.tls.crlFile),
        minVersion: 'TLSv1.2',
      })
      crlStamp = stamp
    } catch (err) {
      app.log.error({ err }, 'cannot reload the CRL; keeping the previous one')
    }
  }, opts.crlReloadMs ?? 30_000)
  crlTimer.unref()
  app.addHook('onClose', async () => clearInterval(crlTimer))

  // 1. address screen before TLS: nothing else runs for an address no POP may use.
  server.on('connection', (socket: Socket) => {
    addressOf.set(socket, socket.remoteAddress)
    let refused: string | null = 'internal_error'
    try {
      refused = auth.screenConnection(socket.remoteAddress) // counts a refusal
    } catch {
      // cannot tell: dropped
    }
    if (refused) drop(socket)
  })
  // 2. the client certificate, as Node's TLS judged it against our CA and CRL. Prepended:
  // the HTTP layer must not see a socket whose certificate is refused.
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    if (socket.authorized) {
      authorized.add(socket)
      return
    }
    const peer = socket.getPeerCertificate(false)
    const hadCertificate = peer !== null && typeof peer === 'object' && 'raw' in peer
    try {
      auth.refuseCertificate(
        ipOf(socket),
        certificateRefusal(socket.authorizationError, hadCertificate),
        {
          code: String(socket.authorizationError ?? 'NO_CERTIFICATE'),
          fingerprint: hadCertificate ? certFingerprint(peer.raw) : undefined,
        },
      )
    } catch {
      // the audit log failed: refused all the same
    }
    drop(socket)
  })
  // Handshake errors. Prepended so the socket is settled before https.Server re-emits
  // the same error as 'clientError'.
  server.prependListener('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
    if (settled.has(socket) || settled.has(rawOf(socket))) return
    settled.add(socket)
    const r = handshakeRefusal(err)
    try {
      if (r.kind === 'certificate')
        auth.refuseCertificate(ipOf(socket), r.reason, { code: err.code ?? null })
      else refusals.count(ipOf(socket), 'tls', r.reason)
    } catch {
      // the handshake failed anyway
    }
  })
  refusals.start()
  app.addHook('onClose', async () => refusals.stop())

  // Raw bytes for every content type: the digest is checked on exactly what arrived.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => done(null, body))

  app.setErrorHandler(
    jsonErrorHandler({
      logCoded: false, // a coded 5xx (the audit log failed) is logged where it happened
      seen: (err, req) => (req.clavitorError = err), // for the onSend audit row
    }),
  )
  await app.register(requestIdPlugin)
  app.setNotFoundHandler((_req, reply) =>
    reply
      .status(404)
      .send({ error: { code: 'CLA_ERR_NOT_FOUND', message: 'no such POP API route' } }),
  )

  // An address over its refusal limit is refused before authentication, only counted.
  app.addHook('onRequest', async (req, reply) => {
    const ip = ipOf(req.socket)
    const wait = refusals.limitedFor(ip)
    if (wait === 0) return
    refusals.count(ip, 'http', 'refusals_limited')
    req.clavitorAudited = true
    reply.header('retry-after', String(wait))
    throw claError(
      'CLA_ERR_AUTH_RATE_LIMITED',
      `too many refused requests from this address; retry in ${wait} s`,
      { details: { reason: 'refusals_limited', retryAfterSec: wait } },
    )
  })

  // Audit whatever was answered without an authentication decision (e.g. 413, 400).
  app.addHook('onSend', async (req, reply, payload) => {
    if (req.clavitorAudited) return payload
    req.clavitorAudited = true
    const err = req.clavitorError as { code?: string } | undefined
    auth.auditAnswer({
      status: reply.statusCode,
      reason:
        err?.code === 'FST_ERR_CTP_BODY_TOO_LARGE'
          ? 'body_too_large'
          : err instanceof ClavitorError
            ? reasonOf(err)
            : (err?.code ?? `status_${reply.statusCode}`),
      popId: req.popId,
      ip: ipOf(req.socket),
      route: `${req.method} ${splitUrl(req.url).path}`,
      fingerprint: req.popFingerprint,
    })
    return payload
  })

  // The decision, on the raw body.
  app.addHook('preValidation', async (req) => {
    const { path, query } = splitUrl(req.raw.url ?? '/')
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
    req.rawBody = raw
    const sock = req.socket as TLSSocket
    const peer =
      typeof sock.getPeerCertificate === 'function' ? sock.getPeerCertificate(false) : undefined
    try {
      const r = await auth.authenticate({
        method: req.method,
        path,
        query,
        authority: req.headers.host ?? '',
        headers: req.headers,
        rawBody: raw,
        ip: sock.remoteAddress,
        peerCertificate: peer && 'raw' in peer ? peer : null,
        tokenOptional: TOKEN_ROUTES.has(path),
      })
      req.popId = r.popId
      req.popFingerprint = r.fingerprint
    } finally {
      // allowed or refused, authenticate() wrote the row (or failed closed)
      req.clavitorAudited = true
    }
    const ct = req.headers['content-type'] ?? ''
    if (raw.length === 0) req.body = undefined
    else if (/^application\/json\b/i.test(ct)) {
      try {
        req.body = JSON.parse(raw.toString('utf8'))
      } catch (cause) {
        throw claError('CLA_ERR_INVALID_INPUT', 'the body is not valid JSON', { cause })
      }
    }
  })

  await app.register(rateLimit, {
    hook: 'preHandler',
    max: opts.rateLimitMax ?? 600,
    timeWindow: opts.rateLimitWindowMs ?? 60_000,
    keyGenerator: (req: FastifyRequest) => `pop:${req.popId ?? 'unknown'}`,
    addHeadersOnExceeding: {
      'x-ratelimit-limit': false,
      'x-ratelimit-remaining': false,
      'x-ratelimit-reset': false,
    },
    onExceeded: (req: FastifyRequest) => {
      // fail closed: if this cannot be written the request is refused with 503 anyway
      auth.auditAnswer({
        status: 429,
        reason: 'rate_limited',
        popId: req.popId,
        ip: req.socket.remoteAddress,
        route: `${req.method} ${splitUrl(req.url).path}`,
        fingerprint: req.popFingerprint,
        counted: false, // a POP over its request rate, not a refusal of its credentials
      })
    },
    errorResponseBuilder: (_req: FastifyRequest, ctx: { after: string; ttl: number }) =>
      claError('CLA_ERR_AUTH_RATE_LIMITED', `rate limit exceeded, retry in ${ctx.after}`, {
        details: { reason: 'rate_limited', retryAfterSec: Math.ceil(ctx.ttl / 1000) },
      }),
  })

  // --- token routes (decisions and audit rows in lib/auth/token-grant.ts) -------------
  const grant = (req: FastifyRequest) => ({
    popId: req.popId!,
    fingerprint: req.popFingerprint!,
    ip: req.socket.remoteAddress,
    nowSec: Math.floor(now() / 1000),
    secret: tokenSecrets()[0]!,
  })
  app.post('/pop/v1/token', async (req) => grantTokens(db, grant(req)))
  app.post('/pop/v1/token/refresh', async (req) => {
    const body = req.body as { refresh_token?: unknown } | undefined
    const presented = typeof body?.refresh_token === 'string' ? body.refresh_token : ''
    return refreshTokens(db, presented, grant(req))
  })

  // --- the data routes, behind the token --------------------------------------------
  if (opts.syncRoutes ?? true) {
    // a long-poll must answer before the idle-socket timeout cuts it
    const idleS = Math.floor((opts.connectionTimeoutMs ?? 60_000) / 1000)
    await app.register(syncRoutes, {
      core,
      maxWaitS: Math.max(0, Math.min(FEED_MAX_WAIT_S, idleS - 10)),
      ...(opts.maxFeedWaiters !== undefined ? { maxWaiters: opts.maxFeedWaiters } : {}),
    })
  }
  if (opts.routes) await opts.routes(app)
  return app
}
