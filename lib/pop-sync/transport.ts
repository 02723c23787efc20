// The POP's side of the sync API as a small interface with two verbs. The plain-HTTP
// implementation here serves tests and the demo; the authenticated client (mTLS + signed
// requests, lib/auth/pop-client.ts) plugs in through `requestFeedClient`.
import { claError, isClavitorError } from '../errors.js'
import { parseBlobPath } from '../store/format.js'
import type { FeedPage } from '../core-sync/feed.js'
import type { PopReport } from '../core-sync/pop-state.js'

/** The POP's side of the core's sync API: read feed pages, report after a run. */
export interface FeedClient {
  /** The page of blobs after `cursor` (null = from the start). */
  page(cursor: string | null, limit: number): Promise<FeedPage>
  /** Tells the core this POP's cursor, lag and last error after a run. */
  report(state: PopReport): Promise<void>
  /**
   * The feed's long-poll (GET /pop/v1/feed?wait=): answers as soon as a blob past `cursor`
   * is committed on the core, or after about `waitS` seconds with an empty page. Its page
   * holds at most one item: it is a wake-up, the pull reads the pages itself.
   */
  wait?(cursor: string | null, waitS: number, signal?: AbortSignal): Promise<FeedPage>
}

/** Any `request(method, path, {query, body}) → {status, json}` client (e.g. PopApiClient). */
export interface JsonRequester {
  /**
   * Sends one request; resolves with the HTTP status and the parsed JSON body (null when
   * there is none or it is not JSON).
   * @param path Path from the API root, e.g. `/pop/v1/feed`.
   */
  request(
    method: string,
    path: string,
    opts?: {
      query?: Record<string, string>
      body?: unknown
      /** This request's timeout, ms. */
      timeoutMs?: number
      signal?: AbortSignal
    },
  ): Promise<{ status: number; json: unknown }>
}

/**
 * Checks that a feed page answered by the core has the expected shape (paths by the store's
 * own rule); returns it typed. Throws CLA_ERR_SYNC_FEED when malformed.
 */
export function checkPage(json: unknown): FeedPage {
  const p = json as FeedPage
  const ok =
    p &&
    typeof p === 'object' &&
    typeof p.store_id === 'string' &&
    Number.isSafeInteger(p.generation) &&
    Array.isArray(p.items) &&
    // its signature and chain are checked by the pull (lib/pop-sync/pull.ts checkChain)
    typeof p.checkpoint === 'object' &&
    p.checkpoint !== null &&
    typeof p.more === 'boolean' &&
    (p.remaining === undefined || Number.isSafeInteger(p.remaining)) &&
    (p.next === null || typeof p.next === 'string') &&
    p.items.every(
      (i) =>
        i &&
        typeof i.path === 'string' &&
        typeof i.p0 === 'string' &&
        // the store's own path rule (lib/store/format.ts), not a looser copy of it
        parseBlobPath(i.path)?.p0 === i.p0 &&
        /^[0-9a-f]{64}$/.test(i.sha256) &&
        /^[0-9a-f]{64}$/.test(i.file_sha256) &&
        Number.isSafeInteger(i.size) &&
        Number.isSafeInteger(i.file_size) &&
        Number.isSafeInteger(i.created_at) &&
        Number.isSafeInteger(i.seq),
    )
  if (!ok) throw claError('CLA_ERR_SYNC_FEED', 'the core answered a malformed feed page')
  return p
}

function httpFail(what: string, status: number, json: unknown): never {
  const e = (json as { error?: { code?: string; message?: string } })?.error
  throw claError(
    'CLA_ERR_SYNC_FEED',
    `${what}: HTTP ${status}${e?.code ? ` ${e.code}: ${e.message}` : ''}`,
    {
      details: { status, core_code: e?.code ?? null },
    },
  )
}

/**
 * Time a report may take, ms: a small POST after the run is over; a dead link must not hold
 * the run's end (and the next run) for the client's general 30 s.
 */
export const REPORT_TIMEOUT_MS = 10_000

/** Time a long-poll may take beyond its wait before the POP gives up on the answer, ms. */
export const WAIT_MARGIN_MS = 15_000

/** A FeedClient over any JSON requester (the authenticated PopApiClient, or plain HTTP). */
export function requestFeedClient(client: JsonRequester): FeedClient {
  return {
    async wait(cursor, waitS, signal) {
      const query: Record<string, string> = { limit: '1', wait: String(waitS) }
      if (cursor) query.cursor = cursor
      let res: { status: number; json: unknown }
      try {
        res = await client.request('GET', '/pop/v1/feed', {
          query,
          timeoutMs: waitS * 1000 + WAIT_MARGIN_MS,
          ...(signal ? { signal } : {}),
        })
      } catch (cause) {
        if (signal?.aborted)
          throw claError('CLA_ERR_SYNC_ABORTED', 'feed wait stopped by shutdown', { cause })
        if (isClavitorError(cause)) throw cause
        throw claError('CLA_ERR_SYNC_FEED', `feed wait failed: ${(cause as Error).message}`, {
          cause,
        })
      }
      if (res.status !== 200) httpFail('feed wait', res.status, res.json)
      return checkPage(res.json)
    },
    async page(cursor, limit) {
      const query: Record<string, string> = { limit: String(limit) }
      if (cursor) query.cursor = cursor
      let res: { status: number; json: unknown }
      try {
        res = await client.request('GET', '/pop/v1/feed', { query })
      } catch (cause) {
        if (isClavitorError(cause)) throw cause
        throw claError('CLA_ERR_SYNC_FEED', `feed request failed: ${(cause as Error).message}`, {
          cause,
        })
      }
      if (res.status !== 200) httpFail('feed', res.status, res.json)
      return checkPage(res.json)
    },
    async report(state) {
      let res: { status: number; json: unknown }
      try {
        res = await client.request('POST', '/pop/v1/report', {
          body: state,
          timeoutMs: REPORT_TIMEOUT_MS,
        })
      } catch (cause) {
        if (isClavitorError(cause)) throw cause
        throw claError('CLA_ERR_SYNC_FEED', `report failed: ${(cause as Error).message}`, { cause })
      }
      if (res.status !== 200) httpFail('report', res.status, res.json)
    },
  }
}

/**
 * Plain HTTP (tests, demo, a POP on the same host). `headers` are added to each request
 * (tests send `x-pop-id` to their test auth hook). Never use it across a network.
 */
export function plainHttpRequester(
  baseUrl: string,
  headers: Record<string, string> = {},
  timeoutMs = 30_000,
): JsonRequester {
  const base = baseUrl.replace(/\/+$/, '')
  return {
    async request(method, path, opts = {}) {
      const qs = opts.query ? '?' + new URLSearchParams(opts.query).toString() : ''
      const res = await fetch(base + path + qs, {
        method,
        headers: {
          ...headers,
          ...(opts.body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}),
        signal: opts.signal
          ? AbortSignal.any([opts.signal, AbortSignal.timeout(opts.timeoutMs ?? timeoutMs)])
          : AbortSignal.timeout(opts.timeoutMs ?? timeoutMs),
      })
      const text = await res.text()
      let json: unknown = null
      try {
        json = text ? JSON.parse(text) : null
      } catch {
        json = null
      }
      return { status: res.status, json }
    },
  }
}

/**
 * A FeedClient over plain HTTP to `baseUrl` (tests, the demo): no mTLS, no signed requests.
 * `headers` are added to each request. Never use it across a network.
 */
export function plainHttpFeedClient(
  baseUrl: string,
  headers: Record<string, string> = {},
): FeedClient {
  return requestFeedClient(plainHttpRequester(baseUrl, headers))
}
