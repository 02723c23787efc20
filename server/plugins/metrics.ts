// GET /metrics (Prometheus text format) and a request-latency histogram, for both apps.
// Latency is labelled by route pattern (never the raw URL: P0s must not become labels).
import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'
import type { Metrics } from '../../lib/metrics.js'

export interface MetricsPluginOptions {
  metrics: Metrics
}

const plugin: FastifyPluginAsync<MetricsPluginOptions> = async (app, opts) => {
  const { metrics } = opts
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched'
    metrics.observeRequest(req.method, route, reply.statusCode, reply.elapsedTime / 1000)
  })
  app.get('/metrics', async (_req, reply) => {
    const { contentType, body } = await metrics.render()
    return reply.type(contentType).send(body)
  })
}

/** fastify-plugin: the onResponse hook must see every route, not only this plugin's. */
export const metricsPlugin = fp(plugin, { name: 'clavitor-metrics', fastify: '5.x' })
