// The core's Fastify app factory. Thin: routes parse, call lib/, map errors. It never
// listens; server/main.ts (or `clavitor core serve`) does, and handles signals.
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import type { Core } from '../lib/core.js'
import type { TrustProxy } from '../lib/auth/trust-proxy.js'
import adminApiRoutes, { type AdminApiOptions } from './admin/api.js'
import adminRoutes, { type AdminRoutesOptions } from './admin/routes.js'
import { credentialsRoutes, type CredentialsRoutesOptions } from './routes/credentials.js'
import { openApiRoute } from './openapi.js'
import { paddleWebhookRoutes } from './routes/paddle-webhook.js'
import { createBaseApp } from '../http/base.js'
import { metricsPlugin, type MetricsExposure } from '../http/metrics.js'

/** What {@link buildCoreApp} serves and how; only `core` is required. */
export interface CoreAppOptions {
  /** The library instance this app serves. */
  core: Core
  /** Fastify options (logger, https, …); request and header timeouts default on. */
  fastify?: FastifyServerOptions
  /** Admin web UI options (public origin, setup-URL printer); see docs/admin-ui.md. */
  admin?: Omit<AdminRoutesOptions, 'core'>
  /** The JSON admin API at /admin/api/v1 (rate limits). */
  adminApi?: Omit<AdminApiOptions, 'core'>
  /** Credentials API options (rate limit); see docs/api.md. */
  credentials?: Omit<CredentialsRoutesOptions, 'core'>
  /**
   * The TLS proxy in front of this app (lib/auth/trust-proxy.ts): its X-Forwarded-For and
   * X-Forwarded-Proto then give each request's client address (rate limits, audit rows)
   * and scheme (the admin cookies' `Secure`). Default false: the peer is the client.
   */
  trustProxy?: TrustProxy
  /**
   * Serve GET /metrics: `{ token }` behind that bearer token, `{}` to anyone (a loopback
   * demo). Default: not served (it names POPs, refusal reasons, the billing backlog).
   */
  metrics?: MetricsExposure
}

/**
 * Builds the core's HTTP app (never listens): /healthz (503 when the data folder cannot take
 * writes), /metrics when exposed, the admin UI at /admin, the admin API at /admin/api/v1, the
 * credentials API, its OpenAPI document and the Paddle webhook. The POP API is a separate app
 * (buildPopApiApp).
 */
export async function buildCoreApp(opts: CoreAppOptions): Promise<FastifyInstance> {
  const app = await createBaseApp({
    fastify: opts.fastify,
    trustProxy: opts.trustProxy,
    bodyLimit: 1024 * 1024,
  })
  // 503 when the data folder cannot take writes (a full disk): a balancer or monitor sees it
  app.get('/healthz', async (_req, reply) => {
    const h = opts.core.health()
    return reply.status(h.ok ? 200 : 503).send(h)
  })
  await app.register(metricsPlugin, { metrics: opts.core.metrics, expose: opts.metrics })
  await app.register(adminRoutes, { prefix: '/admin', core: opts.core, ...opts.admin })
  await app.register(adminApiRoutes, { prefix: '/admin/api/v1', core: opts.core, ...opts.adminApi })
  await app.register(credentialsRoutes, { core: opts.core, ...opts.credentials })
  await app.register(openApiRoute, { maxWl3Bytes: opts.core.credentials.maxWl3Bytes })
  await app.register(paddleWebhookRoutes, { core: opts.core })
  // Routes: one plugin per area (server/routes/*.ts), registered here with { core: opts.core }.
  // The POP sync API is NOT here: it lives in its own mTLS app (server/pop-api.ts).
  return app
}
