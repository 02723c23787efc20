// A small Paddle Billing API client on the global fetch: base URL from config, Bearer key,
// `Paddle-Version: 1`, a timeout per request, typed errors that carry Paddle's error code,
// type and request_id, pagination that follows `meta.pagination.next` as given, and a
// token bucket that keeps us under Paddle's 240 requests a minute. After a 429 the client
// refuses further calls until Retry-After has passed (without touching the network).
import { claError, ClavitorError } from '../errors.js'
import { systemClock, type Clock } from '../clock.js'

export interface PaddleClientOptions {
  /** e.g. https://sandbox-api.paddle.com or the fake's http://127.0.0.1:PORT. */
  baseUrl: string
  /** Paddle API key (sent as a Bearer token). */
  apiKey: string
  /** Per-request timeout in ms. Default 10000. */
  timeoutMs?: number
  /** Request budget per minute (token bucket). Default 240, Paddle's limit. */
  requestsPerMinute?: number
  clock?: Clock
}

export interface PaddleErrorDetails {
  /** HTTP status, or 0 when no answer arrived (network error, timeout). */
  status: number
  code?: string
  type?: string
  detail?: string
  requestId?: string
  retryAfterS?: number
  errors?: Array<{ field: string; message: string }>
  method: string
  path: string
  /**
   * True when the request may have been done at Paddle although we have no answer saying
   * so: it was sent and then timed out, the connection broke, or a gateway answered
   * 502/504. A create with an unknown outcome may still land later (push.ts settles it).
   */
  unknownOutcome?: boolean
}

/** Network errors raised before a request is sent: its outcome is known (nothing done). */
const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'ENETUNREACH', 'EHOSTUNREACH'])
/** Gateway answers: Paddle's side may have done the work behind them. */
const GATEWAY = new Set([502, 504])

/**
 * A successful Paddle answer: its `data`, its `meta` (pagination, request_id) and the HTTP status.
 */
export interface PaddleResponse<T = Record<string, unknown>> {
  data: T
  meta: Record<string, unknown>
  status: number
}

/** A Paddle object as JSON; every one has an id. */
export type PaddleObject = Record<string, unknown> & { id: string }

export function paddleDetails(err: unknown): PaddleErrorDetails | undefined {
  if (err instanceof ClavitorError && err.code.startsWith('CLA_ERR_PADDLE_')) {
    return err.details as unknown as PaddleErrorDetails
  }
  return undefined
}

/**
 * A small Paddle Billing API client: Bearer key, `Paddle-Version: 1`, a timeout per request, a
 * token bucket (default 240 requests a minute), and typed errors (CLA_ERR_PADDLE_*) carrying
 * Paddle's code, type and request_id.
 */
export class PaddleClient {
  readonly baseUrl: string
  private readonly apiKey: string
  readonly timeoutMs: number
  private readonly clock: Clock
  private readonly perMinute: number
  private tokens: number
  private refilledAt: number
  private blockedUntil = 0

  constructor(opts: PaddleClientOptions) {
    if (!/^https?:\/\/[^/]+/.test(opts.baseUrl ?? '')) {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `Paddle API URL must be http(s)://host[:port], got "${opts.baseUrl}"`,
      )
    }
    if (!opts.apiKey) throw claError('CLA_ERR_PADDLE_NOT_CONFIGURED', 'Paddle API key is empty')
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '')
    this.apiKey = opts.apiKey
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.clock = opts.clock ?? systemClock
    this.perMinute = opts.requestsPerMinute ?? 240
    this.tokens = this.perMinute
    this.refilledAt = this.clock.now()
  }

  /** Milliseconds until a call may be made after a 429 (0 = now). */
  blockedForMs(): number {
    return Math.max(0, this.blockedUntil - this.clock.now())
  }

  private async takeToken(method: string, path: string): Promise<void> {
    const blocked = this.blockedForMs()
    if (blocked > 0) {
      throw claError(
        'CLA_ERR_PADDLE_RATE_LIMITED',
        `Paddle rate limit: blocked for ${Math.ceil(blocked / 1000)} s more`,
        {
          details: {
            status: 429,
            code: 'too_many_requests',
            retryAfterS: Math.ceil(blocked / 1000),
            method,
            path,
          },
        },
      )
    }
    for (;;) {
      const now = this.clock.now()
      const elapsed = Math.max(0, now - this.refilledAt)
      this.tokens = Math.min(this.perMinute, this.tokens + (elapsed * this.perMinute) / 60_000)
      this.refilledAt = now
      if (this.tokens >= 1) {
        this.tokens -= 1
        return
      }
      await this.clock.sleep(Math.ceil(((1 - this.tokens) * 60_000) / this.perMinute))
    }
  }

  /** The URL is on the base URL's origin, under its path. */
  private isOurs(url: string): boolean {
    let u: URL
    try {
      u = new URL(url)
    } catch {
      return false
    }
    const base = new URL(this.baseUrl)
    const basePath = base.pathname.replace(/\/+$/, '')
    return (
      u.origin === base.origin &&
      (u.pathname === basePath || u.pathname.startsWith(`${basePath}/`) || basePath === '') &&
      url.startsWith(this.baseUrl)
    )
  }

  /**
   * Sends one request and returns the answer, after waiting for a rate-limit token. Throws
   * CLA_ERR_PADDLE_RATE_LIMITED (429, or still blocked after one), CLA_ERR_PADDLE_UNAVAILABLE
   * (network, timeout, 5xx) or CLA_ERR_PADDLE_REJECTED (other 4xx); their details are
   * `PaddleErrorDetails` (paddleDetails reads them).
   * @param pathOrUrl A path under the base URL, or an absolute URL (a pagination `next`).
   * @param body Sent as JSON when given.
   */
  async request<T = PaddleObject>(
    method: string,
    pathOrUrl: string,
    body?: unknown,
  ): Promise<PaddleResponse<T>> {
    const url = pathOrUrl.startsWith('http') ? pathOrUrl : this.baseUrl + pathOrUrl
    // An absolute URL comes from Paddle's own answers (a pagination `next`): it is followed
    // only on the base URL's origin and path, so the API key never goes anywhere else.
    if (!this.isOurs(url)) {
      throw claError(
        'CLA_ERR_PADDLE_REJECTED',
        `refusing to send the Paddle API key to ${safeOrigin(url)}: not under ${this.baseUrl}`,
        { details: { url: safeOrigin(url) } },
      )
    }
    const path = url.slice(this.baseUrl.length)
    await this.takeToken(method, path)
    let res: Response
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.apiKey}`,
          'paddle-version': '1',
          accept: 'application/json',
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      })
    } catch (cause) {
      const timedOut = (cause as Error)?.name === 'TimeoutError'
      const sysCode = (cause as { cause?: { code?: unknown } })?.cause?.code
      const notSent = !timedOut && typeof sysCode === 'string' && NOT_SENT.has(sysCode)
      throw claError(
        'CLA_ERR_PADDLE_UNAVAILABLE',
        timedOut
          ? `Paddle did not answer ${method} ${path} within ${this.timeoutMs} ms`
          : `Paddle unreachable for ${method} ${path}: ${(cause as Error)?.message ?? String(cause)}`,
        {
          cause,
          details: {
            status: 0,
            code: timedOut ? 'timeout' : 'network_error',
            method,
            path,
            unknownOutcome: !notSent,
          },
        },
      )
    }
    let text: string
    try {
      text = await res.text()
    } catch (cause) {
      throw claError(
        'CLA_ERR_PADDLE_UNAVAILABLE',
        `Paddle connection dropped while answering ${method} ${path}`,
        {
          cause,
          details: {
            status: res.status,
            code: 'connection_dropped',
            method,
            path,
            unknownOutcome: true,
          },
        },
      )
    }
    let json: { data?: unknown; meta?: Record<string, unknown>; error?: Record<string, unknown> } =
      {}
    try {
      json = text ? JSON.parse(text) : {}
    } catch {
      json = {}
    }
    if (res.ok) {
      return { data: json.data as T, meta: json.meta ?? {}, status: res.status }
    }
    const e = json.error ?? {}
    const requestId = typeof json.meta?.request_id === 'string' ? json.meta.request_id : undefined
    const retryAfterRaw = res.headers.get('retry-after')
    const retryAfterS =
      retryAfterRaw !== null && /^\d+$/.test(retryAfterRaw) ? Number(retryAfterRaw) : undefined
    const details: PaddleErrorDetails = {
      status: res.status,
      ...(typeof e.code === 'string' ? { code: e.code } : {}),
      ...(typeof e.type === 'string' ? { type: e.type } : {}),
      ...(typeof e.detail === 'string' ? { detail: e.detail } : {}),
      ...(requestId ? { requestId } : {}),
      ...(retryAfterS !== undefined ? { retryAfterS } : {}),
      ...(Array.isArray(e.errors) ? { errors: e.errors as PaddleErrorDetails['errors'] } : {}),
      method,
      path,
      ...(GATEWAY.has(res.status) ? { unknownOutcome: true } : {}),
    }
    const what = `Paddle ${res.status} ${details.code ?? ''} for ${method} ${path}${details.detail ? `: ${details.detail}` : ''}${requestId ? ` (request_id ${requestId})` : ''}`
    if (res.status === 429) {
      this.blockedUntil = this.clock.now() + (retryAfterS ?? 60) * 1000
      throw claError('CLA_ERR_PADDLE_RATE_LIMITED', what, {
        details: details as unknown as Record<string, unknown>,
      })
    }
    if (res.status >= 500) {
      throw claError('CLA_ERR_PADDLE_UNAVAILABLE', what, {
        details: details as unknown as Record<string, unknown>,
      })
    }
    throw claError('CLA_ERR_PADDLE_REJECTED', what, {
      details: details as unknown as Record<string, unknown>,
    })
  }

  /** GET `path` (see {@link PaddleClient.request}). */
  get<T = PaddleObject>(path: string) {
    return this.request<T>('GET', path)
  }
  /** POST `body` as JSON to `path` (see {@link PaddleClient.request}). */
  post<T = PaddleObject>(path: string, body: unknown) {
    return this.request<T>('POST', path, body)
  }
  /** PATCH `path` with `body` as JSON (see {@link PaddleClient.request}). */
  patch<T = PaddleObject>(path: string, body: unknown) {
    return this.request<T>('PATCH', path, body)
  }

  /**
   * Pages of a list endpoint, following `meta.pagination.next` exactly as Paddle gives it.
   * `query` is only used for the first page.
   */
  async *pages(path: string, query: Record<string, string> = {}): AsyncGenerator<PaddleObject[]> {
    const qs = new URLSearchParams(query).toString()
    let next: string | undefined = qs ? `${path}?${qs}` : path
    while (next) {
      const page: PaddleResponse<PaddleObject[]> = await this.get<PaddleObject[]>(next)
      yield Array.isArray(page.data) ? page.data : []
      const p = page.meta.pagination as { next?: string; has_more?: boolean } | undefined
      next = p?.has_more && typeof p.next === 'string' ? p.next : undefined
    }
  }
}

/** Scheme, host and port of a URL for a message (never its path or query). */
function safeOrigin(url: string): string {
  try {
    return new URL(url).origin
  } catch {
    return 'an invalid URL'
  }
}
