// GET /metrics (Prometheus text format) and a request-latency histogram, for both apps.
// Latency is labelled by route pattern (never the raw URL: P0s must not become labels).
//
// /metrics names POP ids, refusal counts by reason and the billing backlog, so it is not
// anonymous on a public port: it is served only when the app is given `expose`, and then
// only to `Authorization: Bearer <token>` when a token is set (`expose: {}` serves it to
// anyone: for a listener that only a scraper can reach, or the loopback demo).
import { createHash, timingSafeEqual } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import { claError } from '../lib/errors.js'
import type { Metrics } from '../lib/metrics.js'

/** How an app serves /metrics: absent = not at all; `token` = behind that bearer token. */
export interface MetricsExposure {
  token?: string
}

export interface MetricsPluginOptions {
  metrics: Metrics
  expose?: MetricsExposure | undefined
}

const digest = (s: string) => createHash('sha256').update(s).digest()

/** Constant-time check of an Authorization header against the bearer token. */
export function bearerMatches(header: string | undefined, token: string): boolean {
  const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header ?? '')
  return m !== null && timingSafeEqual(digest(m[1]!), digest(token))
}

const plugin: FastifyPluginAsync<MetricsPluginOptions> = async (app, opts) => {
  const { metrics, expose } = opts
  if (expose?.token !== undefined && expose.token.length < 16)
    throw claError('CLA_ERR_INVALID_OPTION', 'the metrics token must be at least 16 characters')
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched'
    metrics.observeRequest(req.method, route, reply.statusCode, reply.elapsedTime / 1000)
  })
  if (!expose) return
  app.get('/metrics', async (req, reply) => {
    if (expose.token !== undefined && !bearerMatches(req.headers.authorization, expose.token)) {
      void reply.header('www-authenticate', 'Bearer realm="metrics"')
      throw claError(
        'CLA_ERR_METRICS_UNAUTHORIZED',
        'send the metrics token as `Authorization: Bearer <token>`',
      )
    }
    const { contentType, body } = await metrics.render()
    return reply.type(contentType).send(body)
  })
}

/** fastify-plugin: the onResponse hook must see every route, not only this plugin's. */
export const metricsPlugin = fp(plugin, { name: 'clavitor-metrics', fastify: '5.x' })
