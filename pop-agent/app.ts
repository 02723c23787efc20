// The POP's Fastify app factory: WL3 lookups for vaults, health. Thin; never listens.
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify'
import { errorResponse } from '../lib/errors.js'

export interface PopAppOptions {
  fastify?: FastifyServerOptions
}

export async function buildPopApp(opts: PopAppOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({ requestTimeout: 30_000, connectionTimeout: 60_000, ...opts.fastify })
  app.setErrorHandler((err, req, reply) => {
    const { status, body } = errorResponse(err)
    if (status >= 500) req.log.error({ err }, 'request failed')
    return reply.status(status).send(body)
  })
  app.get('/healthz', async () => ({ ok: true }))
  return app
}
