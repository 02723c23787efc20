// What every Fastify app of ours starts with, core and POP alike: random request ids
// (http/request-id.ts), bodies validated without type coercion (http/strict-body.ts),
// the time limits (http/timeouts.ts), an optional trusted proxy (lib/auth/trust-proxy.ts)
// and the coded JSON error handler (http/error-handler.ts).
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import type { TrustProxy } from '../lib/auth/trust-proxy.js'
import { jsonErrorHandler } from './error-handler.js'
import { requestIdOptions, requestIdPlugin } from './request-id.js'
import { strictBodyOptions } from './strict-body.js'
import { timeoutOptions } from './timeouts.js'

export interface BaseAppOptions {
  /** The caller's Fastify options; they win over ours. */
  fastify?: FastifyServerOptions | undefined
  /** The proxy in front, if any; default none (the peer is the client). */
  trustProxy?: TrustProxy | undefined
  /** Body limit, bytes. Default Fastify's (1 MiB). */
  bodyLimit?: number
}

/** Fastify options shared by our apps (also for an app that builds Fastify itself). */
export function baseOptions(opts: BaseAppOptions = {}): FastifyServerOptions {
  return {
    ...requestIdOptions,
    ...strictBodyOptions,
    ...(opts.bodyLimit !== undefined ? { bodyLimit: opts.bodyLimit } : {}),
    ...(opts.trustProxy ? { trustProxy: opts.trustProxy } : {}),
    ...timeoutOptions(opts.fastify),
  }
}

/** A Fastify app with our options, the request-id plugin and the JSON error handler. */
export async function createBaseApp(opts: BaseAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify(baseOptions(opts))
  app.setErrorHandler(jsonErrorHandler())
  await app.register(requestIdPlugin)
  return app
}
