// The credentials API (vaults enrolling devices). Thin: TypeBox schemas validate, the
// preParsing hook authenticates the vault API key, lib/credentials decides.
//
//   POST /api/v1/credentials/register   {p0, wl3: base64} [Idempotency-Key] → 201 Registered
//   GET  /api/v1/credentials?customer=… → {items, next}
//   GET  /api/v1/credentials/wl3?p0=…[&version=N] → raw WL3 bytes, ETag "sha256"
//   GET  /api/v1/credentials/sync       → {pops, items, next}
//   GET  /api/v1/vault/status           → the key's vault: subscription, plan, limits, usage
//
// Hook order per request: rate limit per client IP (onRequest) → key check (preParsing,
// before the body is read; refusals audited by lib/credentials) → rate limit per verified
// key id (preValidation) → body parse and schema validation → handler. The key's own
// budget is counted only once its secret matched: a stranger who knows a key id (it is
// in audit rows and the admin UI) cannot spend it, and random ids meet the IP limit.
import type { FastifyError, FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { claError } from '../../lib/errors.js'
import { jsonErrorHandler } from '../../http/error-handler.js'
import { mapFastifyError } from '../../http/map-error.js'
import { limitedError, limitPerAddress } from '../../http/rate-limit.js'
import type { Credentials, VaultAuth } from '../../lib/credentials/index.js'
import {
  ROUTE_ERRORS,
  ListQuery,
  ListResponse,
  Registered,
  RegisterHeaders,
  SyncQuery,
  SyncResponse,
  VaultStatusResponse,
  Wl3Binary,
  Wl3Query,
  errorResponses,
  registerBody,
  type RegisterBody,
} from './credentials-schemas.js'

/** Options of the credentials API plugin (docs/api.md); only `core` is required. */
export interface CredentialsRoutesOptions {
  /** Where the routes' decisions are made: the core's credentials handle. */
  core: { credentials: Credentials }
  /** Requests per verified API key per window. Default 120. */
  rateLimitMax?: number
  /**
   * Requests per client IP per window, counted before the key check (keyed or not).
   * Default 1200: many vault devices may share one NAT address.
   */
  ipRateLimitMax?: number
  /** Rate-limit window in ms (both limits). Default 60000. */
  rateLimitWindowMs?: number
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated vault API key (credentials routes). */
    vaultAuth?: VaultAuth
  }
}

/** Request body limit for a WL3 of `maxWl3Bytes`: its base64 plus room for the JSON around it. */
export function registerBodyLimit(maxWl3Bytes: number): number {
  return 4 * Math.ceil(maxWl3Bytes / 3) + 1024
}

function authOf(req: FastifyRequest): VaultAuth {
  if (!req.vaultAuth) throw claError('CLA_ERR_API_KEY_MISSING', 'request is not authenticated')
  return req.vaultAuth
}

/** Maps Fastify's own 4xx errors on these routes to our stable codes. */
function mapError(err: FastifyError): unknown {
  if (err.validation) {
    const first = err.validation[0]
    const field =
      first?.instancePath?.replace(/^\//, '') ||
      ((first?.params as { missingProperty?: string } | undefined)?.missingProperty ?? '')
    if (field === 'p0' && first?.keyword !== 'required') {
      return claError(
        'CLA_ERR_INVALID_P0',
        'p0 must be lowercase hex of even length, 32 to 128 characters',
        { cause: err, details: { field } },
      )
    }
    if (field === 'wl3' && first?.keyword === 'maxLength') {
      return claError('CLA_ERR_PAYLOAD_TOO_LARGE', `wl3 is larger than the limit`, {
        cause: err,
        details: { field },
      })
    }
  }
  return mapFastifyError(err)
}

export const credentialsRoutes: FastifyPluginAsync<CredentialsRoutesOptions> = async (
  app,
  opts,
) => {
  const creds = opts.core.credentials
  const maxWl3 = creds.maxWl3Bytes

  app.setErrorHandler(jsonErrorHandler({ message: 'credentials request failed', map: mapError }))

  const window = opts.rateLimitWindowMs ?? 60_000
  const limited = limitedError('CLA_ERR_CREDENTIAL_RATE_LIMITED')
  await limitPerAddress(app, {
    max: opts.ipRateLimitMax ?? 1200,
    windowMs: window,
    code: 'CLA_ERR_CREDENTIAL_RATE_LIMITED',
  })

  // Authenticate before the body is read: a caller without a key costs no parsing.
  app.addHook('preParsing', async (req, _reply, payload) => {
    req.vaultAuth = creds.authenticateVaultRequest(req.headers.authorization, {
      ip: req.ip,
      route: `${req.method} ${req.routeOptions.url ?? req.url}`,
    })
    return payload
  })
  // The key's own budget, counted once the key is verified (createRateLimit: a second
  // rateLimit() hook of the same registration would be skipped as "already ran").
  const keyBudget = app.createRateLimit({
    max: opts.rateLimitMax ?? 120,
    timeWindow: window,
    keyGenerator: (req) => `key:${authOf(req).keyId}`,
  })
  app.addHook('preValidation', async (req, reply) => {
    const r = await keyBudget(req)
    if (r.isAllowed) return
    reply
      .header('x-ratelimit-limit', r.max)
      .header('x-ratelimit-remaining', r.remaining)
      .header('x-ratelimit-reset', r.ttlInSeconds)
    if (!r.isExceeded) return
    reply.header('retry-after', r.ttlInSeconds)
    throw limited(req, { max: r.max, after: `${r.ttlInSeconds} seconds`, ttl: r.ttl })
  })

  app.post<{ Body: RegisterBody }>(
    '/api/v1/credentials/register',
    {
      bodyLimit: registerBodyLimit(maxWl3),
      schema: {
        headers: RegisterHeaders,
        body: registerBody(maxWl3),
        response: { 201: Registered, ...errorResponses(ROUTE_ERRORS.register) },
      },
    },
    async (req, reply) => {
      const auth = authOf(req)
      const wl3 = Buffer.from(req.body.wl3, 'base64')
      const key = req.headers['idempotency-key']
      if (Array.isArray(key))
        throw claError('CLA_ERR_INVALID_INPUT', 'send one Idempotency-Key header', {
          details: { field: 'idempotency_key' },
        })
      const out = await creds.registerCredential({
        vault: auth.vaultId,
        p0: req.body.p0,
        wl3,
        actor: `key:${auth.keyId}`,
        ...(key !== undefined ? { idempotencyKey: key } : {}),
      })
      // a replay answers as the first attempt did, and says so (as Stripe's API does)
      if (out.replayed) reply.header('idempotent-replayed', 'true')
      return reply.status(201).send(out)
    },
  )

  app.get<{ Querystring: ListQuery }>(
    '/api/v1/credentials',
    {
      schema: {
        querystring: ListQuery,
        response: { 200: ListResponse, ...errorResponses(ROUTE_ERRORS.list) },
      },
    },
    async (req) => {
      const auth = authOf(req)
      if (req.query.customer !== auth.customerId) {
        throw claError('CLA_ERR_CREDENTIAL_FORBIDDEN', 'this API key cannot see that customer', {
          details: { customer: req.query.customer },
        })
      }
      return creds.listCredentials(auth.customerId, pageOpts(req.query))
    },
  )

  app.get<{ Querystring: Wl3Query }>(
    '/api/v1/credentials/wl3',
    {
      schema: {
        querystring: Wl3Query,
        response: { 200: Wl3Binary, ...errorResponses(ROUTE_ERRORS.wl3) },
      },
    },
    async (req, reply: FastifyReply) => {
      const auth = authOf(req)
      const w = await creds.latestWl3(
        auth.customerId,
        req.query.p0,
        req.query.version ? { version: req.query.version } : {},
      )
      const etag = `"${w.sha256}"`
      reply
        .header('etag', etag)
        .header('cache-control', 'private, no-cache')
        .header('x-clavitor-version', String(w.version))
        .header('x-clavitor-versions', String(w.versions))
        .header('x-clavitor-seq', String(w.seq))
      if (ifNoneMatch(req.headers['if-none-match'], etag)) return reply.status(304).send()
      return reply.type('application/octet-stream').send(w.payload)
    },
  )

  app.get<{ Querystring: SyncQuery }>(
    '/api/v1/credentials/sync',
    {
      schema: {
        querystring: SyncQuery,
        response: { 200: SyncResponse, ...errorResponses(ROUTE_ERRORS.sync) },
      },
    },
    async (req) => creds.syncStatus(authOf(req).customerId, pageOpts(req.query)),
  )

  app.get(
    '/api/v1/vault/status',
    {
      schema: {
        response: { 200: VaultStatusResponse, ...errorResponses(ROUTE_ERRORS.vaultStatus) },
      },
    },
    async (req, reply) => {
      // what the vault shows its users changes with billing: never from a cache
      reply.header('cache-control', 'private, no-store')
      return creds.vaultStatus(authOf(req).vaultId)
    },
  )
}

function pageOpts(q: { limit?: number; after?: string }): { limit?: number; after?: string } {
  return {
    ...(q.limit !== undefined ? { limit: q.limit } : {}),
    ...(q.after !== undefined ? { after: q.after } : {}),
  }
}

function ifNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false
  return header
    .split(',')
    .map((s) => s.trim().replace(/^W\//, ''))
    .some((s) => s === etag || s === '*')
}
