// The time limits of every HTTP server we run, in one place (docs/security.md, "Size and
// time limits"). Fastify leaves them off; a slow client must not hold a socket forever.
//
// Node checks `requestTimeout` and `headersTimeout` only every `connectionsCheckingInterval`
// (30 s by default): a 30 s request timeout then fires between 30 and 60 s, and a short
// one much later than it says. We check every second.
import type { FastifyServerOptions } from 'fastify'

export const REQUEST_TIMEOUT_MS = 30_000
export const CONNECTION_TIMEOUT_MS = 60_000
export const CONNECTIONS_CHECKING_INTERVAL_MS = 1000

/**
 * Fastify options with our time limits; `overrides` (a caller's Fastify options) win,
 * and an `https` object in them gets the checking interval too.
 */
export function timeoutOptions(overrides: FastifyServerOptions = {}): FastifyServerOptions {
  const o = overrides as FastifyServerOptions & {
    http?: object
    https?: object | null
  }
  return {
    requestTimeout: REQUEST_TIMEOUT_MS,
    connectionTimeout: CONNECTION_TIMEOUT_MS,
    ...o,
    http: { connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS, ...o.http },
    ...(o.https && typeof o.https === 'object'
      ? {
          https: {
            connectionsCheckingInterval: CONNECTIONS_CHECKING_INTERVAL_MS,
            ...o.https,
          },
        }
      : {}),
  } as FastifyServerOptions
}
