// The JSON admin API: app.register(adminApiRoutes, { prefix: '/admin/api/v1', core }).
// Thin: a per-admin bearer token (lib/admin/api-tokens.ts) names the acting admin, whose
// desk (lib/admin/desk.ts) does the work with the same scope and role checks as the web
// pages. No cookies, so no CSRF; rate-limited per address before authentication and per
// token after it. The routes and schemas come from api-schemas.ts (also the OpenAPI).
import type { FastifyInstance, FastifyRequest } from 'fastify'
import { jsonErrorHandler } from '../../http/error-handler.js'
import { mapFastifyError } from '../../http/map-error.js'
import { limitedError, limitPerAddress } from '../../http/rate-limit.js'
import type { Actor, RequestFacts } from '../../lib/admin/admin.js'
import { AdminDesk } from '../../lib/admin/desk.js'
import { pageArgs } from '../../lib/admin/read.js'
import { parseRole } from '../../lib/admin/roles.js'
import type { Core } from '../../lib/core.js'
import { claError } from '../../lib/errors.js'
import { ADMIN_API_ROUTES, type AdminApiOperation } from './api-schemas.js'

/** Options of the JSON admin API plugin (buildCoreApp({ adminApi })). */
export interface AdminApiOptions {
  /** The opened core whose admins, billing and vaults the API serves. */
  core: Core
  /** Requests per token per minute. Default 300. */
  rateLimitMax?: number
  /** Requests per client address per minute, before authentication. Default 1200. */
  ipRateLimitMax?: number
}

declare module 'fastify' {
  interface FastifyRequest {
    adminApiActor: (Actor & { tokenId: string }) | null
  }
}

type Handler = (d: AdminDesk, req: FastifyRequest) => unknown

export default async function adminApiRoutes(
  app: FastifyInstance,
  opts: AdminApiOptions,
): Promise<void> {
  const { core } = opts
  app.setErrorHandler(
    jsonErrorHandler({ message: 'admin API request failed', map: mapFastifyError }),
  )
  const limited = limitedError('CLA_ERR_ADMIN_RATE_LIMITED')
  await limitPerAddress(app, {
    max: opts.ipRateLimitMax ?? 1200,
    windowMs: 60_000,
    code: 'CLA_ERR_ADMIN_RATE_LIMITED',
  })
  const facts = (req: FastifyRequest): Partial<RequestFacts> => ({
    ip: req.ip,
    route: `${req.method} ${req.routeOptions.url ?? req.url}`,
  })
  app.decorateRequest('adminApiActor', null)
  app.addHook('preParsing', async (req, _reply, payload) => {
    const h = req.headers.authorization
    const token = typeof h === 'string' && /^bearer /i.test(h) ? h.slice(7).trim() : undefined
    req.adminApiActor = core.admin.authenticateApiToken(token, facts(req))
    return payload
  })
  const tokenBudget = app.createRateLimit({
    max: opts.rateLimitMax ?? 300,
    timeWindow: 60_000,
    keyGenerator: (req) => `token:${req.adminApiActor?.tokenId ?? req.ip}`,
  })
  app.addHook('preValidation', async (req, reply) => {
    const r = await tokenBudget(req)
    if (r.isAllowed || !r.isExceeded) return
    reply.header('retry-after', r.ttlInSeconds)
    throw limited(req, { max: r.max, after: `${r.ttlInSeconds} seconds`, ttl: r.ttl })
  })

  const page = (req: FastifyRequest) => {
    const q = (req.query ?? {}) as Record<string, unknown>
    const f = Object.fromEntries(
      (['status', 'customer', 'discount'] as const)
        .filter((k) => typeof q[k] === 'string' && q[k] !== '')
        .map((k) => [k, q[k] as string]),
    )
    return { ...pageArgs(q.limit, q.offset), ...f }
  }
  const id = (req: FastifyRequest) => String((req.params as { id: string }).id)
  const body = (req: FastifyRequest) => (req.body ?? {}) as Record<string, unknown>
  const str = (v: unknown) => (typeof v === 'string' ? v : '')

  const handlers: Record<AdminApiOperation, Handler> = {
    adminMe: (d) => {
      const { humanId, name, role, scope } = d.actor
      return { humanId, name, role, scope }
    },
    adminDashboard: (d) => d.dashboard(),
    adminCustomerTree: (d, req) => {
      const q = str((req.query as Record<string, unknown> | undefined)?.q)
      return q.trim() ? d.searchCustomers(q) : d.customerTree()
    },
    adminUpdateCustomer: (d, req) => {
      const b = body(req)
      return d.updateCustomer(id(req), {
        ...(b.name !== undefined ? { name: str(b.name) } : {}),
        ...(b.email !== undefined ? { email: str(b.email) } : {}),
      })
    },
    adminMoveCustomer: (d, req) => d.moveCustomer(id(req), str(body(req).parent_id)),
    adminArchiveCustomer: (d, req) => d.archiveCustomer(id(req)),
    adminTransaction: (d, req) => d.transaction(id(req)),
    adminAdjustTransaction: (d, req) => {
      const b = body(req)
      return d.adjustTransaction(id(req), {
        action: b.action === 'credit' ? 'credit' : 'refund',
        reason: str(b.reason),
        ...(b.amount !== undefined ? { amount: str(b.amount) } : {}),
      })
    },
    adminUpdateDiscount: (d, req) => {
      const b = body(req)
      return d.updateDiscount(id(req), {
        ...(b.description !== undefined ? { description: str(b.description) } : {}),
        ...(b.amount !== undefined ? { amount: str(b.amount) } : {}),
      })
    },
    adminArchiveDiscount: (d, req) => d.updateDiscount(id(req), { status: 'archived' }),
    adminCustomer: (d, req) => d.customer(id(req)),
    adminCreateCustomer: (d, req) => {
      const b = body(req)
      return d.createCustomer({
        parentId: str(b.parent_id) || null,
        name: str(b.name),
        email: str(b.email),
      })
    },
    adminSubscriptions: (d, req) => d.subscriptions(page(req)),
    adminSubscription: (d, req) => d.subscription(id(req)),
    adminCreateSubscription: (d, req) => d.createSubscription(body(req)),
    adminChangeSubscription: (d, req) => d.changeSubscription(id(req), body(req)),
    adminRetrySubscription: (d, req) => d.retrySubscription(id(req)),
    adminTransactions: (d, req) => d.transactions(page(req)),
    adminVaults: (d, req) => d.vaults(page(req)),
    adminVault: (d, req) => d.vaultWithKeys(id(req)),
    adminCreateVault: (d, req) => {
      const b = body(req)
      return d.createVault({
        customerId: str(b.customer_id),
        subscriptionId: str(b.subscription_id) || null,
        name: str(b.name),
      })
    },
    adminIssueVaultKey: (d, req) => d.issueVaultKey(id(req)),
    adminRevokeVaultKey: (d, req) => d.revokeVaultKey(id(req)),
    adminDiscounts: (d, req) => d.discounts(page(req)),
    adminCreateMargin: (d, req) => {
      const b = body(req)
      return d.createMargin({
        mspId: str(b.msp_id),
        description: str(b.description),
        percentage: str(b.percentage),
      })
    },
    adminPops: (d) => d.pops(),
    adminEnrolPop: (d, req) => {
      const b = body(req)
      return d.enrolPop({
        id: str(b.id),
        certPem: str(b.cert_pem),
        allowlist: (b.allowlist as string[]) ?? [],
        ...(str(b.name) ? { name: str(b.name) } : {}),
      })
    },
    adminRemovePop: (d, req) => {
      d.removePop(id(req))
      return { id: id(req), removed: true }
    },
    adminRevokePop: async (d, req) => ({
      id: id(req),
      revoked: await d.revokePopCertificates(id(req)),
    }),
    adminAdmins: (d) => d.admins(),
    adminInvite: (d, req) => {
      const b = body(req)
      return d.invite(parseRole(b.role), b.scope)
    },
  }

  // the table and the handlers name the same operations, both ways
  const routed = new Set<string>(ADMIN_API_ROUTES.map((r) => r.operationId))
  const unrouted = Object.keys(handlers).filter((k) => !routed.has(k))
  if (unrouted.length)
    throw new Error(`admin API: handlers without a route: ${unrouted.join(', ')}`)
  for (const route of ADMIN_API_ROUTES) {
    const handler = handlers[route.operationId]
    if (!handler) throw new Error(`admin API: no handler for ${route.operationId}`)
    app.route({
      method: route.method,
      url: route.url,
      schema: {
        ...('params' in route ? { params: route.params } : {}),
        ...('query' in route ? { querystring: route.query } : {}),
        ...('body' in route ? { body: route.body } : {}),
      },
      handler: async (req, reply) => {
        const desk = new AdminDesk(core, req.adminApiActor!, facts(req))
        const result = await handler(desk, req)
        return reply.code(route.status).send(result)
      },
    })
  }
}
