// The core's Fastify app factory. Thin: routes parse, call lib/, map errors. It never
// listens; server/main.ts (or `clavitor core serve`) does, and handles signals.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { errorResponse } from '../lib/errors.js'

export interface CoreAppOptions {
  /** Fastify options (logger, https, …); request and header timeouts default on. */
  fastify?: FastifyServerOptions
}

export async function buildCoreApp(opts: CoreAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    // Fastify leaves these off; a slow client must not hold a socket forever.
    requestTimeout: 30_000,
    connectionTimeout: 60_000,
    bodyLimit: 1024 * 1024,
    ...opts.fastify,
  })
  app.setErrorHandler((err, req, reply) => {
    const { status, body } = errorResponse(err)
    if (status >= 500) req.log.error({ err }, 'request failed')
    return reply.status(status).send(body)
  })
  app.get('/healthz', async () => ({ ok: true }))
  // routes are registered here, one plugin per area (server/routes/*.ts)
  return app
}
