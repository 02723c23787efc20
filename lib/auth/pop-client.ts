// The POP side of the POP API: an HTTPS client that holds the POP's key and certificate
// (mutual TLS, our CA pinned), signs every request (RFC 9421 + RFC 9530 content-digest),
// fetches an access token and refreshes it before it expires (rotating refresh tokens),
// and backs off on 429 honouring Retry-After. The sync agent uses it; nobody has to think
// about authentication.
//
//   const api = PopApiClient.fromDataDir(popDataDir, { baseUrl: 'https://core:8443', popId: 'ams1' })
//   const { status, json } = await api.request('GET', '/pop/v1/feed', { query: { cursor } })
//
// Files ({pop data}/pop-auth/, see lib/auth/ca.ts): key.pem (made by `clavitor pop init`),
// cert.pem (issued by `clavitor ca issue-pop`), ca.pem (our CA).
import { systemClock, type Clock } from '../clock.js'
import { Agent, request as httpsRequest } from 'node:https'
import { createPrivateKey, type KeyObject } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { setTimeout as sleep } from 'node:timers/promises'
import { claError } from '../errors.js'
import { popAuthPaths } from './ca.js'
import { signRequest } from './http-signature.js'

export interface PopApiClientOptions {
  /** https://host:port of the core's POP API. */
  baseUrl: string
  popId: string
  keyPem?: string | Buffer
  certPem?: string | Buffer
  caPem?: string | Buffer
  keyFile?: string
  certFile?: string
  caFile?: string
  /** Source address to bind (multi-homed POPs; tests). */
  localAddress?: string
  /** Retries after a 429 (honouring Retry-After). Default 3. */
  maxRetries?: number
  /** Longest wait for one Retry-After, ms. Default 60000. */
  maxRetryAfterMs?: number
  /** Per-request timeout, ms. Default 30000. */
  timeoutMs?: number
  /** Refresh the access token when it has less than this left, seconds. Default 60. */
  refreshMarginSec?: number
  /** The clock (lib/clock.ts). Default the system's. */
  clock?: Clock
}

export interface PopApiResponse<T = unknown> {
  status: number
  headers: Record<string, string | string[] | undefined>
  json: T
  /** The raw response body. */
  body: Buffer
}

export interface RequestOptions {
  query?: Record<string, string | number | undefined> | string
  body?: unknown
  /** Send the access token (default true except for the token routes). */
  token?: boolean
  /** Extra headers (not signed unless covered). */
  headers?: Record<string, string>
  /** This request's timeout, ms (a feed long-poll waits longer than other requests). Default: the client's. */
  timeoutMs?: number
  /** Stops the request (the POP shuts down while it waits). */
  signal?: AbortSignal
}

interface Tokens {
  access: string
  accessExpiresAt: number
  refresh: string
  refreshExpiresAt: number
}

function pem(v: string | Buffer | undefined, file: string | undefined, what: string): Buffer {
  if (v !== undefined) return Buffer.from(v)
  if (file === undefined)
    throw claError('CLA_ERR_INVALID_OPTION', `PopApiClient: ${what} (PEM or file) is required`)
  try {
    return readFileSync(file)
  } catch (cause) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `PopApiClient: cannot read ${what} ${file}: ${(cause as Error).message}`,
      { cause },
    )
  }
}

export class PopApiClient {
  readonly baseUrl: URL
  readonly popId: string
  private readonly key: KeyObject
  private readonly agent: Agent
  private readonly opts: PopApiClientOptions
  private readonly now: () => number
  private tokens: Tokens | undefined
  private tokenPromise: Promise<void> | undefined

  constructor(opts: PopApiClientOptions) {
    this.opts = opts
    this.baseUrl = new URL(opts.baseUrl)
    if (this.baseUrl.protocol !== 'https:')
      throw claError('CLA_ERR_INVALID_OPTION', 'PopApiClient: baseUrl must be https://')
    this.popId = opts.popId
    const keyPem = pem(opts.keyPem, opts.keyFile, 'key')
    this.key = createPrivateKey(keyPem)
    if (this.key.asymmetricKeyType !== 'ed25519')
      throw claError('CLA_ERR_INVALID_OPTION', 'PopApiClient: the key must be Ed25519')
    this.agent = new Agent({
      keepAlive: true,
      key: keyPem,
      cert: pem(opts.certPem, opts.certFile, 'certificate'),
      ca: pem(opts.caPem, opts.caFile, 'CA certificate'),
      minVersion: 'TLSv1.2',
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    })
    const clock = opts.clock ?? systemClock
    this.now = () => clock.now()
  }

  /** A client from a POP data folder ({data}/pop-auth/key.pem, cert.pem, ca.pem). */
  static fromDataDir(
    dataDir: string,
    opts: Omit<PopApiClientOptions, 'keyFile' | 'certFile' | 'caFile'>,
  ): PopApiClient {
    const p = popAuthPaths(dataDir)
    return new PopApiClient({ ...opts, keyFile: p.key, certFile: p.cert, caFile: p.ca })
  }

  /** Closes kept-alive connections. */
  close(): void {
    this.agent.destroy()
  }

  /**
   * Signs and sends a request; manages the token; retries after 429. Resolves with any
   * HTTP status (the caller decides); rejects on network errors.
   */
  async request<T = unknown>(
    method: string,
    path: string,
    o: RequestOptions = {},
  ): Promise<PopApiResponse<T>> {
    const isTokenRoute = path === '/pop/v1/token' || path === '/pop/v1/token/refresh'
    const useToken = o.token ?? !isTokenRoute
    const maxRetries = this.opts.maxRetries ?? 3
    let retriedAuth = false
    let retriedStale = false
    for (let attempt = 0; ; attempt++) {
      if (useToken) await this.ensureToken()
      let res: PopApiResponse<T>
      try {
        res = await this.send<T>(method, path, o, useToken ? this.tokens?.access : undefined)
      } catch (err) {
        // A kept-alive socket the core closed (its 5 s keep-alive timeout) just as we reused
        // it: most likely the request never reached the core. Sent again once, on a new
        // socket, signed afresh, but only when sending it twice does no harm (a read, or the
        // report, which sets state): never a token grant or refresh, whose second use of a
        // refresh token revokes the chain if the first did reach the core.
        const idempotent = method === 'GET' || path === '/pop/v1/report'
        if (!(err as { reusedSocket?: boolean }).reusedSocket || retriedStale || !idempotent)
          throw err
        retriedStale = true
        continue
      }
      if (res.status === 429 && attempt < maxRetries) {
        // a shutdown (the request's signal) does not wait out a Retry-After
        await sleep(this.retryAfterMs(res.headers['retry-after']), undefined, {
          ...(o.signal ? { signal: o.signal } : {}),
        })
        continue
      }
      if (res.status === 401 && useToken && !retriedAuth) {
        const reason = (res.json as { error?: { details?: { reason?: string } } })?.error?.details
          ?.reason
        if (reason && reason.startsWith('token_')) {
          // expired or rotated secret: start over with the certificate
          this.tokens = undefined
          retriedAuth = true
          continue
        }
      }
      return res
    }
  }

  /** The signed headers for a request (exported for tools and tests). */
  signedHeaders(method: string, path: string, query: string, body: Buffer): Record<string, string> {
    const authority = this.baseUrl.host
    const h = signRequest(
      { method, path, query, authority, headers: {} },
      { key: this.key, keyid: this.popId },
      body,
    )
    return { ...h, 'content-digest': h['content-digest']! }
  }

  private retryAfterMs(v: string | string[] | undefined): number {
    const s = Array.isArray(v) ? v[0] : v
    let ms = 1000
    if (s && /^\d+$/.test(s)) ms = Number(s) * 1000
    else if (s && !Number.isNaN(Date.parse(s))) ms = Math.max(0, Date.parse(s) - this.now())
    return Math.min(ms, this.opts.maxRetryAfterMs ?? 60_000)
  }

  private async ensureToken(): Promise<void> {
    const nowSec = Math.floor(this.now() / 1000)
    const margin = this.opts.refreshMarginSec ?? 60
    if (this.tokens && this.tokens.accessExpiresAt - margin > nowSec) return
    this.tokenPromise ??= this.obtainToken(nowSec).finally(() => {
      this.tokenPromise = undefined
    })
    await this.tokenPromise
  }

  private async obtainToken(nowSec: number): Promise<void> {
    if (this.tokens && this.tokens.refreshExpiresAt > nowSec) {
      const r = await this.request<TokenJson>('POST', '/pop/v1/token/refresh', {
        body: { refresh_token: this.tokens.refresh },
      })
      if (r.status === 200) {
        this.tokens = fromJson(r.json)
        return
      }
      this.tokens = undefined // refresh refused (reused/expired): log in again
    }
    const r = await this.request<TokenJson>('POST', '/pop/v1/token', { body: {} })
    if (r.status !== 200) {
      const e = (r.json as { error?: { code?: string; message?: string } })?.error
      throw claError(
        'CLA_ERR_AUTH_TOKEN',
        `the core refused a token: ${r.status} ${e?.code ?? ''} ${e?.message ?? ''}`.trim(),
        {
          details: { status: r.status, reason: 'token_refused' },
        },
      )
    }
    this.tokens = fromJson(r.json)
  }

  private send<T>(
    method: string,
    path: string,
    o: RequestOptions,
    token: string | undefined,
  ): Promise<PopApiResponse<T>> {
    const query =
      o.query === undefined
        ? ''
        : typeof o.query === 'string'
          ? o.query
          : new URLSearchParams(
              Object.entries(o.query)
                .filter((e): e is [string, string | number] => e[1] !== undefined)
                .map(([k, v]): [string, string] => [k, String(v)]),
            ).toString()
    const body = o.body === undefined ? Buffer.alloc(0) : Buffer.from(JSON.stringify(o.body))
    const headers: Record<string, string> = {
      ...o.headers,
      ...this.signedHeaders(method, path, query, body),
      accept: 'application/json',
    }
    if (body.length > 0) headers['content-type'] = 'application/json'
    headers['content-length'] = String(body.length)
    if (token) headers.authorization = `Bearer ${token}`
    return new Promise((resolve, reject) => {
      const req = httpsRequest(
        {
          protocol: 'https:',
          hostname: this.baseUrl.hostname.replace(/^\[|\]$/g, ''),
          port: this.baseUrl.port || 443,
          method,
          path: path + (query ? `?${query}` : ''),
          headers,
          agent: this.agent,
          servername: /^[\d.]+$|:/.test(this.baseUrl.hostname) ? undefined : this.baseUrl.hostname,
          timeout: o.timeoutMs ?? this.opts.timeoutMs ?? 30_000,
          ...(o.signal ? { signal: o.signal } : {}),
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('error', reject)
          res.on('end', () => {
            const raw = Buffer.concat(chunks)
            let json: unknown = undefined
            try {
              json = raw.length ? JSON.parse(raw.toString('utf8')) : undefined
            } catch {
              json = undefined
            }
            resolve({
              status: res.statusCode ?? 0,
              headers: res.headers,
              json: json as T,
              body: raw,
            })
          })
        },
      )
      req.on('timeout', () =>
        req.destroy(
          new Error(
            `POP API request timed out after ${o.timeoutMs ?? this.opts.timeoutMs ?? 30_000} ms`,
          ),
        ),
      )
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          req.reusedSocket && (err.code === 'ECONNRESET' || err.code === 'EPIPE')
            ? Object.assign(err, { reusedSocket: true })
            : err,
        ),
      )
      req.end(body)
    })
  }
}

interface TokenJson {
  access_token: string
  expires_at: number
  refresh_token: string
  refresh_expires_at: number
}

function fromJson(j: TokenJson): Tokens {
  return {
    access: j.access_token,
    accessExpiresAt: j.expires_at,
    refresh: j.refresh_token,
    refreshExpiresAt: j.refresh_expires_at,
  }
}
