// What a WL3 lookup answers over HTTP, decided once for both paths that send it: the
// Fastify routes (pop-agent/routes/wl3.ts) and the fast path before Fastify
// (pop-agent/fast-lookups.ts): status (200, or 304 when If-None-Match holds the ETag),
// ETag, sequence number, content type and body. Which URLs the fast path may answer is here too.
import type { Wl3Answer } from './lookup.js'

/** What a lookup route serves: the raw WL3 payload, or the whole signed `.cla` file. */
export type Wl3Form = 'payload' | 'cla'

/** The lookup routes' path prefix. */
export const WL3_PREFIX = '/api/v1/wl3/'

/** A lookup's HTTP answer (the checkpoint and request-id headers are the app's). */
export interface Wl3Response {
  status: 200 | 304
  etag: string
  /** `x-clavitor-seq`. */
  seq: string
  /** Present with a body (200). */
  contentType?: string
  body?: Buffer
}

/** Whether an If-None-Match header names `etag` (weak or strong) or is `*`. */
export function etagMatches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)
}

/** The HTTP answer of a checked lookup answer `a` in `form`, given the request's If-None-Match. */
export function wl3Response(
  a: Wl3Answer,
  form: Wl3Form,
  ifNoneMatch: string | undefined,
): Wl3Response {
  const etag = form === 'payload' ? a.etag : `"cla-${a.info.sha256}"`
  const seq = String(a.info.seq)
  if (etagMatches(ifNoneMatch, etag)) return { status: 304, etag, seq }
  return form === 'payload'
    ? { status: 200, etag, seq, contentType: 'application/octet-stream', body: a.payload }
    : { status: 200, etag, seq, contentType: 'application/vnd.clavitor.cla', body: a.file }
}

/**
 * The P0 and form of a request URL the fast path may answer: exactly
 * `/api/v1/wl3/{p0}` or `/api/v1/wl3/{p0}/cla` with a P0 of lowercase hex (what a
 * client may ask for is checked by the lookup), no query, no escapes. Anything else is
 * undefined: the Fastify routes answer it (and their 404 or 400).
 */
export function lookupTarget(url: string): { p0: string; form: Wl3Form } | undefined {
  if (!url.startsWith(WL3_PREFIX)) return undefined
  let end = url.length
  let form: Wl3Form = 'payload'
  if (url.endsWith('/cla')) {
    end -= 4
    form = 'cla'
  }
  const p0 = url.slice(WL3_PREFIX.length, end)
  if (p0.length === 0 || p0.length > 128) return undefined
  for (let i = 0; i < p0.length; i++) {
    const c = p0.charCodeAt(i)
    // 0-9, a-f
    if (!((c >= 48 && c <= 57) || (c >= 97 && c <= 102))) return undefined
  }
  return { p0, form }
}
