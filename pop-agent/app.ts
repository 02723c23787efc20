// The POP's Fastify app factory: WL3 lookups for vaults, health. Thin; never listens.
import type { FastifyInstance, FastifyServerOptions } from 'fastify'
import rateLimit from '@fastify/rate-limit'
import ipaddr from 'ipaddr.js'
import { claError } from '../lib/errors.js'
import type { Pop } from '../lib/pop.js'
import type { TrustProxy } from '../lib/auth/trust-proxy.js'
import { wl3Routes } from './routes/wl3.js'
import { createBaseApp } from '../http/base.js'
import { metricsPlugin, type MetricsExposure } from '../http/metrics.js'
import { budgetStore } from '../http/rate-limit.js'
import { AddressBudgets } from '../lib/address-budgets.js'
import { installFastLookups } from './fast-lookups.js'

/** What {@link buildPopApp} serves and how; every field is optional. */
export interface PopAppOptions {
  /** The POP library instance (lib/pop.ts). Without it only /healthz answers. */
  pop?: Pop
  /**
   * Per client address rate limit of the lookup routes (an IPv6 client counts by its /64).
   * Default `POP_RATE_LIMIT`: 60,000 requests per 60 s; false = off.
   */
  rateLimit?: { max: number; timeWindowMs: number } | false
  /** A proxy in front of the lookups (lib/auth/trust-proxy.ts); default false. */
  trustProxy?: TrustProxy
  /** Serve GET /metrics: `{ token }` behind that bearer token, `{}` to anyone; default not served. */
  metrics?: MetricsExposure
  /** Fill the lookup cache in the background once the app is ready (lib/pop-sync/lookup.ts `prefetch`). Default true. */
  prefetch?: boolean
  /**
   * Answer the lookups' successes (200, 304) before Fastify's request cycle, the same bytes
   * faster (pop-agent/fast-lookups.ts); errors, other routes and a client over its budget
   * go to Fastify. Default true; false = Fastify answers everything.
   */
  fastLookups?: boolean
  /** Fastify options (logger, …). */
  fastify?: FastifyServerOptions
}

/**
 * The lookup routes' default budget per client address: 60,000 a minute (1,000/s). Many vault
 * devices may share one address (an office's NAT, a carrier's CGNAT): 10,000 devices that
 * each revalidate their WL3 every minute fit 6 times over, while one address still gets
 * only a share of what one POP process answers (docs/operations.md "Lookup rate limits").
 */
export const POP_RATE_LIMIT = { max: 60_000, timeWindowMs: 60_000 } as const

/** Client addresses whose budgets are kept (least recently seen go first): ~10 MB at most. */
export const POP_RATE_LIMIT_KEYS = 50_000

/**
 * The budget a client address counts against: an IPv4 address (IPv4-mapped IPv6 too) as it
 * is; an IPv6 address by its /64, the prefix one subscriber holds and can pick any address in.
 */
export function rateLimitKey(ip: string): string {
  if (!ip.includes(':')) return ip
  let a: ipaddr.IPv4 | ipaddr.IPv6
  try {
    a = ipaddr.parse(ip)
  } catch {
    return ip
  }
  if (a.kind() === 'ipv4') return a.toString()
  const v6 = a as ipaddr.IPv6
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString()
  return `${v6.parts
    .slice(0, 4)
    .map((p) => p.toString(16))
    .join(':')}::/64`
}

/**
 * Builds the POP's HTTP app (never listens): /healthz (sync state; 503 when `ok` is false,
 * i.e. the last run failed, as the core's /healthz is 503 when unhealthy), and with a
 * `pop` the WL3 lookup routes (rate-limited per client address) and /metrics when exposed.
 */
export async function buildPopApp(opts: PopAppOptions = {}): Promise<FastifyInstance> {
  const app = await createBaseApp({ fastify: opts.fastify, trustProxy: opts.trustProxy })
  const pop = opts.pop
  app.get('/healthz', async (_req, reply) => {
    if (!pop) return { ok: true }
    const s = pop.sync.status()
    const ok = s.last_run === null ? true : s.last_run.ok
    // 503 when not ok, like the core's: a balancer or monitor that reads only the status sees it
    return reply.status(ok ? 200 : 503).send({
      ok,
      pop_id: pop.popId,
      cursor: s.cursor,
      lag_us: s.last_run?.lag_us ?? null,
      last_run: s.last_run,
      repairs_pending: s.repairs_pending,
      syncing: s.running,
      blobs: pop.store.index.count(),
    })
  })
  if (pop) {
    await app.register(metricsPlugin, { metrics: pop.metrics, expose: opts.metrics })
    const rl = opts.rateLimit ?? POP_RATE_LIMIT
    // the plugin's budgets live in a store of ours: the fast path counts in the same ones
    const budgets = rl
      ? new AddressBudgets({ max: rl.max, windowMs: rl.timeWindowMs, keys: POP_RATE_LIMIT_KEYS })
      : undefined
    await app.register(async (scope) => {
      if (budgets) {
        await scope.register(rateLimit, {
          max: budgets.max,
          timeWindow: budgets.windowMs,
          hook: 'onRequest',
          store: budgetStore(budgets),
          keyGenerator: (req) => rateLimitKey(req.ip),
          errorResponseBuilder: (_req, ctx) =>
            claError(
              'CLA_ERR_SYNC_RATE_LIMITED',
              `rate limit of ${ctx.max} lookups exceeded; retry in ${ctx.after}`,
            ),
        })
      }
      await scope.register(wl3Routes, { pop })
    })
    if (opts.fastLookups !== false)
      installFastLookups(app, {
        lookup: pop.lookup,
        metrics: pop.metrics,
        budgets,
        keyOf: rateLimitKey,
        trustProxy: opts.trustProxy,
      })
    if (opts.prefetch !== false) {
      // a started POP meets its first lookups with a warm cache (idle turns only)
      app.addHook('onReady', async () => {
        pop.lookup
          .prefetch()
          .catch((err: unknown) => app.log.error({ err }, 'the lookup cache prefetch stopped'))
      })
    }
  }
  return app
}
