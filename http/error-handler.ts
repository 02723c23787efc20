// The one JSON error handler of our Fastify apps: every error becomes the coded body of
// lib/errors.ts (`{"error":{"code":"CLA_ERR_…",…}}`) with its HTTP status, and a 5xx is
// logged. The admin UI renders the same mapping as HTML (server/admin/routes.ts).
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { ClavitorError, errorResponse } from '../lib/errors.js'

export interface ErrorHandlerOptions {
  /** Log line for a 5xx. Default 'request failed'. */
  message?: string
  /** Turns a framework error into ours first (e.g. a body parser's 400 into a coded one). */
  map?: (err: FastifyError) => unknown
  /** Log a 5xx that is one of ours (a typed refusal such as a failed audit write). Default true. */
  logCoded?: boolean
  /** Sees the error before it is answered (e.g. to keep it for an audit row). */
  seen?: (err: unknown, req: FastifyRequest) => void
}

export function jsonErrorHandler(opts: ErrorHandlerOptions = {}) {
  const message = opts.message ?? 'request failed'
  return (err: FastifyError, req: FastifyRequest, reply: FastifyReply) => {
    opts.seen?.(err, req)
    const { status, body } = errorResponse(opts.map ? opts.map(err) : err)
    // a full disk is retryable: tell clients when to come back
    if (body.error.code === 'CLA_ERR_STORAGE_FULL') reply.header('retry-after', '60')
    if (status >= 500 && (opts.logCoded !== false || !(err instanceof ClavitorError)))
      req.log.error({ err }, message)
    return reply.status(status).send(body)
  }
}
