// The admin web UI as one Fastify plugin: app.register(adminRoutes, { prefix: '/admin', core }).
// Thin: parses requests, calls lib/admin (authentication, roles, audit) and the billing
// layer, renders server-side HTML (views.ts). Every page and action needs a session except
// the login and setup pages, their WebAuthn JSON endpoints and the static assets.
import { readFileSync } from 'node:fs'
import { dataLayout } from '../../lib/db/data-dir.js'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastifyCookie from '@fastify/cookie'
import fastifyCsrf from '@fastify/csrf-protection'
import fastifyFormbody from '@fastify/formbody'
import fastifyHelmet from '@fastify/helmet'
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { AdminSession, RequestFacts } from '../../lib/admin/admin.js'
import { AdminDesk, type PageArgs } from '../../lib/admin/desk.js'
import { pageArgs } from '../../lib/admin/read.js'
import { parseRole } from '../../lib/admin/roles.js'
import { loadOrCreateSecret } from '../../lib/admin/secrets.js'
import type { Core } from '../../lib/core.js'
import { claError, errorResponse } from '../../lib/errors.js'
import * as v from './views.js'

/** Options of the admin web UI plugin (docs/admin-ui.md); only `core` is required. */
export interface AdminRoutesOptions {
  /** The core whose admins and data the UI serves. */
  core: Core
  /**
   * Public origin of the admin UI, e.g. 'https://admin.example.com'. WebAuthn binds keys
   * to its host name (the RP id). Default: each request's own scheme and Host header,
   * which suits development on localhost; set it in production.
   */
  origin?: string
  /** Secret for the CSRF cookie. Default: {data}/keys/admin-cookie.key, created on first use. */
  secret?: string
  /**
   * Receives the first-admin setup URL when the server starts listening and no admin
   * exists yet. Default: prints it on stderr.
   */
  onSetupUrl?: (url: string) => void
  /** Login and enrollment requests (pages and WebAuthn calls) per client IP per minute. Default 30. */
  authRateLimitMax?: number
}

declare module 'fastify' {
  interface FastifyRequest {
    adminSession: AdminSession | null
  }
  interface FastifyContextConfig {
    /** Admin UI: reachable without a session. */
    adminPublic?: boolean
    /** Admin UI: answers JSON (errors too), not HTML. */
    adminJson?: boolean
  }
}

export const SESSION_COOKIE = 'clavitor_admin'
const SELF_SERVICE = new Set(['/admin/logout', '/admin/tokens', '/admin/tokens/:id/revoke'])
const ASSETS = join(dirname(fileURLToPath(import.meta.url)), 'assets')

function browserBundle(): string {
  const entry = createRequire(import.meta.url).resolve('@simplewebauthn/browser')
  // …/node_modules/@simplewebauthn/browser/script/index.js → …/dist/bundle/index.umd.min.js
  return readFileSync(join(dirname(dirname(entry)), 'dist', 'bundle', 'index.umd.min.js'), 'utf8')
}

export default async function adminRoutes(
  app: FastifyInstance,
  opts: AdminRoutesOptions,
): Promise<void> {
  const { core } = opts
  const admin = core.admin
  const secret = opts.secret ?? loadOrCreateSecret(dataLayout(core.dataDir).keys.adminCookie)
  const fixedOrigin = opts.origin ? new URL(opts.origin) : undefined
  const assets = {
    css: readFileSync(join(ASSETS, 'admin.css'), 'utf8'),
    js: readFileSync(join(ASSETS, 'webauthn.js'), 'utf8'),
    browser: browserBundle(),
  }

  await app.register(fastifyHelmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'"],
        imgSrc: ["'self'", 'data:'],
        connectSrc: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
        objectSrc: ["'none'"],
        baseUri: ["'none'"],
      },
    },
    referrerPolicy: { policy: 'no-referrer' },
  })
  await app.register(fastifyCookie, { secret })
  await app.register(fastifyFormbody, { bodyLimit: 64 * 1024 })
  await app.register(fastifyCsrf, {
    sessionPlugin: '@fastify/cookie',
    cookieKey: 'clavitor_csrf',
    cookieOpts: {
      path: '/admin',
      httpOnly: true,
      sameSite: 'strict',
      secure: 'auto',
      signed: true,
    },
    // The token is an HMAC tied to the session (or 'anonymous' before login).
    csrfOpts: { userInfo: true, hmacKey: secret },
    getUserInfo: (req) => req.adminSession?.sessionHash ?? 'anonymous',
  })

  // Only the unauthenticated endpoints are limited (per IP): they are what a guesser hits.
  await app.register(rateLimit, {
    global: false,
    max: opts.authRateLimitMax ?? 30,
    timeWindow: 60_000,
    hook: 'onRequest',
    errorResponseBuilder: (_req, c) =>
      Object.assign(new Error(`too many login attempts; retry in ${c.after}`), { statusCode: 429 }),
  })

  app.decorateRequest('adminSession', null)

  // Who is asking; anonymous visits go to the login page.
  app.addHook('onRequest', async (req, reply) => {
    req.adminSession = admin.session(req.cookies[SESSION_COOKIE])
    const cfg = req.routeOptions.config
    if (req.adminSession || cfg.adminPublic) return
    if (cfg.adminJson)
      return reply
        .code(401)
        .send(errorResponse(claError('CLA_ERR_ADMIN_UNAUTHENTICATED', 'log in first')).body)
    return reply.code(303).header('cache-control', 'no-store').redirect('/admin/login')
  })
  // Every POST carries a CSRF token (form field _csrf or header x-csrf-token).
  app.addHook('preHandler', (req, reply, done) => {
    if (req.method === 'POST') return app.csrfProtection(req, reply, done)
    done()
  })
  // Second line of defence (lib/admin checks every action too): a viewer's POST never
  // reaches a handler, except logging out. The refusal is audited.
  app.addHook('preHandler', async (req) => {
    const s = req.adminSession
    if (req.method !== 'POST' || !s || req.routeOptions.config.adminPublic) return
    // logging out and an admin's own API tokens (which carry only what they hold) are
    // open to every role
    if (SELF_SERVICE.has(req.routeOptions.url ?? '')) return
    admin.authorize(s, `POST ${req.routeOptions.url ?? req.url}`, 'change', {
      ip: req.ip,
      route: `POST ${req.routeOptions.url ?? req.url}`,
    })
  })
  app.addHook('onSend', async (_req, reply, payload) => {
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store')
    return payload
  })

  app.setErrorHandler((err, req, reply) => {
    const { status, body } = errorResponse(err)
    if (status >= 500) req.log.error({ err }, 'admin request failed')
    if (req.routeOptions.config?.adminJson) return reply.code(status).send(body)
    const csrfFailed = (err as { code?: string }).code?.startsWith('FST_CSRF')
    const text = csrfFailed
      ? 'This form expired or did not come from this site; go back, reload the page and try again.'
      : body.error.message
    return reply
      .code(status)
      .type('text/html; charset=utf-8')
      .send(v.errorPage(status, status === 403 ? 'Refused' : 'Error', text))
  })
  app.setNotFoundHandler((req, reply) =>
    reply
      .code(404)
      .type('text/html; charset=utf-8')
      .send(v.errorPage(404, 'Not found', `Nothing at ${req.url}.`)),
  )

  // --- helpers ---------------------------------------------------------------------------
  const facts = (req: FastifyRequest): RequestFacts => {
    const origin = fixedOrigin ? fixedOrigin.origin : `${req.protocol}://${req.host}`
    const rpID = fixedOrigin ? fixedOrigin.hostname : req.hostname
    return { origin, rpID, ip: req.ip, route: `${req.method} ${req.routeOptions.url ?? req.url}` }
  }
  const csrf = (req: FastifyRequest, reply: FastifyReply) =>
    reply.generateCsrf({ userInfo: req.adminSession?.sessionHash ?? 'anonymous' })
  const ctx = (
    req: FastifyRequest,
    reply: FastifyReply,
    flash?: v.PageCtx['flash'],
  ): v.PageCtx => ({
    session: req.adminSession!,
    csrf: csrf(req, reply),
    path: req.url.split('?')[0]!.replace(/\/$/, '') || '/admin',
    ...(flash ? { flash } : {}),
  })
  const page = (reply: FastifyReply, body: string) =>
    reply.type('text/html; charset=utf-8').send(body)
  const setSession = (reply: FastifyReply, token: string, expiresAtUs: number) =>
    reply.setCookie(SESSION_COOKIE, token, {
      path: '/admin',
      httpOnly: true,
      sameSite: 'strict',
      secure: 'auto',
      expires: new Date(expiresAtUs / 1000),
    })
  const str = (v: unknown) => (typeof v === 'string' ? v : '')
  const body = (req: FastifyRequest) =>
    req.body && typeof req.body === 'object' ? (req.body as Record<string, unknown>) : {}

  const pub = { config: { adminPublic: true } }
  const limited = { rateLimit: {} }
  const pubLimited = { config: { adminPublic: true, ...limited } }
  const pubJson = { config: { adminPublic: true, adminJson: true, ...limited } }

  // --- static assets ---------------------------------------------------------------------
  app.get('/assets/admin.css', pub, (_req, reply) =>
    reply
      .type('text/css; charset=utf-8')
      .header('cache-control', 'public, max-age=300')
      .send(assets.css),
  )
  app.get('/assets/webauthn.js', pub, (_req, reply) =>
    reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=300')
      .send(assets.js),
  )
  app.get('/assets/simplewebauthn-browser.js', pub, (_req, reply) =>
    reply
      .type('text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=3600')
      .send(assets.browser),
  )

  // --- login, setup, logout --------------------------------------------------------------
  app.get('/login', pubLimited, (req, reply) => {
    if (req.adminSession) return reply.redirect('/admin', 303)
    return page(reply, v.loginPage(csrf(req, reply)))
  })
  app.post('/login/options', pubJson, async (req) => admin.startLogin(facts(req)))
  app.post('/login/verify', pubJson, async (req, reply) => {
    const b = body(req)
    const s = await admin.finishLogin(
      { ceremonyId: b.ceremonyId, response: b.response },
      facts(req),
    )
    setSession(reply, s.token, s.expiresAt)
    return { ok: true, name: s.human.name, role: s.human.role }
  })
  // logLevel warn: the one-time token is in the query string; keep it out of the request logs
  app.get('/setup', { ...pubLimited, logLevel: 'warn' }, (req, reply) => {
    const token = str((req.query as Record<string, unknown>).token)
    const { role } = admin.checkToken(token, facts(req))
    return page(reply, v.setupPage(csrf(req, reply), token, role))
  })
  app.post('/setup/options', pubJson, async (req) => {
    const b = body(req)
    return admin.startEnrollment({ token: b.token, name: b.name }, facts(req))
  })
  app.post('/setup/verify', pubJson, async (req, reply) => {
    const b = body(req)
    const s = await admin.finishEnrollment(
      { ceremonyId: b.ceremonyId, response: b.response },
      facts(req),
    )
    setSession(reply, s.token, s.expiresAt)
    return { ok: true, name: s.human.name, role: s.human.role }
  })
  app.post('/logout', (req, reply) => {
    admin.logout(req.cookies[SESSION_COOKIE], facts(req))
    reply.clearCookie(SESSION_COOKIE, { path: '/admin' })
    return reply.redirect('/admin/login', 303)
  })

  // --- pages: each asks the acting admin's desk (lib/admin/desk.ts), which scopes it ----
  const desk = (req: FastifyRequest) => new AdminDesk(core, req.adminSession!, facts(req))
  const param = (req: FastifyRequest, name: string) =>
    str((req.params as Record<string, unknown>)[name])

  app.get('/', (req, reply) => page(reply, v.dashboardPage(ctx(req, reply), desk(req).dashboard())))

  app.get('/customers', (req, reply) => {
    const q = str((req.query as Record<string, unknown>).q).slice(0, 200)
    const d = desk(req)
    return page(
      reply,
      v.customersPage(
        ctx(req, reply),
        d.customerTree(),
        q.trim() ? { q, hits: d.searchCustomers(q) } : undefined,
      ),
    )
  })
  app.post('/customers/:id/archive', async (req, reply) => {
    const id = param(req, 'id')
    await desk(req).archiveCustomer(id)
    return reply.redirect(`/admin/customers/${encodeURIComponent(id)}`, 303)
  })
  app.get('/customers/:id', (req, reply) =>
    page(reply, v.customerPage(ctx(req, reply), desk(req).customer(param(req, 'id')))),
  )
  app.post('/customers/:id/edit', async (req, reply) => {
    const b = body(req)
    const id = param(req, 'id')
    await desk(req).updateCustomer(id, { name: str(b.name), email: str(b.email) })
    return reply.redirect(`/admin/customers/${encodeURIComponent(id)}`, 303)
  })
  app.post('/customers/:id/move', async (req, reply) => {
    const id = param(req, 'id')
    await desk(req).moveCustomer(id, str(body(req).parent_id).trim())
    return reply.redirect(`/admin/customers/${encodeURIComponent(id)}`, 303)
  })
  app.post('/customers', async (req, reply) => {
    const b = body(req)
    const created = await desk(req).createCustomer({
      parentId: str(b.parent_id) || null,
      name: str(b.name),
      email: str(b.email),
    })
    return reply.redirect(`/admin/customers/${encodeURIComponent(created.id)}`, 303)
  })

  app.post('/discounts', async (req, reply) => {
    const b = body(req)
    const mspId = str(b.msp_id)
    await desk(req).createMargin({
      mspId,
      description: str(b.description),
      percentage: str(b.percentage),
    })
    return reply.redirect(`/admin/customers/${encodeURIComponent(mspId)}`, 303)
  })

  /** A paged list page: ?limit=&offset= and the filters parsed once, rendered by `render`. */
  const listPage = (
    path: string,
    render: (c: v.PageCtx, d: AdminDesk, args: PageArgs, f: v.ListFilter) => string,
  ) =>
    app.get(path, (req, reply) => {
      const q = req.query as Record<string, unknown>
      const f: v.ListFilter = {}
      for (const k of ['status', 'customer', 'discount'] as const) {
        const val = str(q[k]).trim().slice(0, 200)
        if (val) f[k] = val
      }
      return page(
        reply,
        render(ctx(req, reply), desk(req), { ...pageArgs(q.limit, q.offset), ...f }, f),
      )
    })
  listPage('/subscriptions', (c, d, a, f) => v.subscriptionsPage(c, d.subscriptions(a), f))
  listPage('/transactions', (c, d, a, f) => v.transactionsPage(c, d.transactions(a), f))
  listPage('/vaults', (c, d, a, f) => v.vaultsPage(c, d.vaults(a), f))
  listPage('/discounts', (c, d, a, f) => v.discountsPage(c, d.discounts(a), f))

  app.post('/discounts/:id/edit', async (req, reply) => {
    const b = body(req)
    await desk(req).updateDiscount(param(req, 'id'), {
      description: str(b.description),
      amount: str(b.amount),
    })
    return reply.redirect('/admin/discounts', 303)
  })
  app.post('/discounts/:id/archive', async (req, reply) => {
    await desk(req).updateDiscount(param(req, 'id'), { status: 'archived' })
    return reply.redirect('/admin/discounts', 303)
  })

  app.get('/transactions/:id', (req, reply) =>
    page(reply, v.transactionPage(ctx(req, reply), desk(req).transaction(param(req, 'id')))),
  )
  app.post('/transactions/:id/adjustments', async (req, reply) => {
    const b = body(req)
    const id = param(req, 'id')
    await desk(req).adjustTransaction(id, {
      action: str(b.action) === 'credit' ? 'credit' : 'refund',
      reason: str(b.reason),
      amount: str(b.amount),
    })
    return reply.redirect(`/admin/transactions/${encodeURIComponent(id)}`, 303)
  })

  app.get('/subscriptions/:id', (req, reply) =>
    page(reply, v.subscriptionPage(ctx(req, reply), desk(req).subscription(param(req, 'id')))),
  )
  app.post('/subscriptions', async (req, reply) => {
    const b = body(req)
    const quantity = Number.parseInt(str(b.quantity), 10)
    const price = str(b.price_id)
    const d = desk(req)
    const created = await d.createSubscription({
      customer_id: str(b.customer_id),
      address_id: str(b.address_id),
      currency_code: d.priceCurrency(price),
      items: [{ price_id: price, quantity: Number.isSafeInteger(quantity) ? quantity : 0 }],
      collection_mode: str(b.collection_mode) === 'automatic' ? 'automatic' : 'manual',
    })
    return reply.redirect(`/admin/subscriptions/${encodeURIComponent(created.id)}`, 303)
  })
  app.post('/subscriptions/:id/action', async (req, reply) => {
    const b = body(req)
    const id = param(req, 'id')
    const action = str(b.action)
    const quantity = Number.parseInt(str(b.quantity), 10)
    await desk(req).changeSubscription(
      id,
      action === 'resume'
        ? { action }
        : action === 'change_items'
          ? {
              action,
              items: [
                {
                  price_id: str(b.price_id),
                  quantity: Number.isSafeInteger(quantity) ? quantity : 0,
                },
              ],
              proration_billing_mode: str(b.proration_billing_mode),
            }
          : { action, effective_from: str(b.effective_from) || 'next_billing_period' },
    )
    return reply.redirect(`/admin/subscriptions/${encodeURIComponent(id)}`, 303)
  })
  app.post('/subscriptions/:id/retry', async (req, reply) => {
    const id = param(req, 'id')
    await desk(req).retrySubscription(id)
    return reply.redirect(`/admin/subscriptions/${encodeURIComponent(id)}`, 303)
  })

  app.get('/vaults/:id', (req, reply) =>
    page(reply, v.vaultPage(ctx(req, reply), desk(req).vaultWithKeys(param(req, 'id')))),
  )
  app.post('/vaults', (req, reply) => {
    const b = body(req)
    const vault = desk(req).createVault({
      customerId: str(b.customer_id),
      subscriptionId: str(b.subscription_id) || null,
      name: str(b.name),
    })
    return reply.redirect(`/admin/vaults/${encodeURIComponent(vault.id)}`, 303)
  })
  app.post('/vaults/:id/keys', (req, reply) => {
    const d = desk(req)
    const issued = d.issueVaultKey(param(req, 'id'))
    return page(
      reply,
      v.vaultPage(
        ctx(req, reply, { kind: 'ok', text: 'API key issued.' }),
        d.vaultWithKeys(issued.vaultId),
        issued,
      ),
    )
  })
  app.post('/vault-keys/:id/revoke', (req, reply) => {
    const key = desk(req).revokeVaultKey(param(req, 'id'))
    return reply.redirect(`/admin/vaults/${encodeURIComponent(key.vault_id)}`, 303)
  })

  app.get('/pops', (req, reply) => page(reply, v.popsPage(ctx(req, reply), desk(req).pops())))
  app.post('/pops', (req, reply) => {
    const b = body(req)
    const d = desk(req)
    const r = d.enrolPop({
      id: str(b.id).trim(),
      certPem: str(b.cert),
      allowlist: str(b.allow)
        .split(',')
        .map((x) => x.trim())
        .filter(Boolean),
      ...(str(b.name).trim() ? { name: str(b.name).trim() } : {}),
    })
    return page(
      reply,
      v.popsPage(ctx(req, reply, { kind: 'ok', text: `POP ${r.pop.id} enrolled.` }), d.pops(), {
        id: r.pop.id,
        rsyncUser: r.rsync.user,
        rsyncPassword: r.rsync.password,
      }),
    )
  })
  app.post('/pops/:id/remove', (req, reply) => {
    desk(req).removePop(param(req, 'id'))
    return reply.redirect('/admin/pops', 303)
  })
  app.post('/pops/:id/revoke', async (req, reply) => {
    await desk(req).revokePopCertificates(param(req, 'id'))
    return reply.redirect('/admin/pops', 303)
  })

  app.get('/events', (req, reply) => {
    const q = req.query as Record<string, unknown>
    const filter = {
      kind: str(q.kind).trim(),
      actor: str(q.actor).trim(),
      outcome: str(q.outcome).trim(),
    }
    // the page position goes to the library as given: listEvents refuses a malformed one
    // (CLA_ERR_INVALID_INPUT) rather than this route quietly showing the first page
    const before = str(q.before).trim()
    const limit = 100
    const d = desk(req)
    const { rows, chain } = d.events({
      ...(filter.kind ? { kind: filter.kind } : {}),
      ...(filter.actor ? { actor: filter.actor } : {}),
      ...(filter.outcome ? { outcome: filter.outcome } : {}),
      ...(before ? { beforeId: Number(before) } : {}),
      limit: limit + 1,
    })
    const more = rows.length > limit
    if (more) rows.pop()
    const names = new Map(d.admins().map((a) => [a.id, a.name] as const))
    return page(
      reply,
      v.eventsPage(ctx(req, reply), {
        rows,
        filter,
        chain,
        nextBefore: more ? rows[rows.length - 1]!.id : null,
        names,
      }),
    )
  })

  app.get('/admins', (req, reply) => page(reply, v.adminsPage(ctx(req, reply), desk(req).admins())))
  app.post('/admins/invite', (req, reply) => {
    const b = body(req)
    const role = parseRole(b.role)
    const d = desk(req)
    // an empty scope field keeps the inviting owner's own scope
    const issued = d.invite(role, str(b.scope).trim() || undefined)
    const url = `${facts(req).origin}/admin/setup?token=${encodeURIComponent(issued.token)}`
    return page(
      reply,
      v.adminsPage(
        ctx(req, reply, { kind: 'ok', text: `Enrollment link for a new ${role} created.` }),
        d.admins(),
        { url, role, scope: issued.scope, expiresAt: issued.expiresAt },
      ),
    )
  })

  // an admin's own API tokens for /admin/api/v1 (server/admin/api.ts)
  const tokensPage = (req: FastifyRequest, reply: FastifyReply, issued?: v.IssuedTokenView) =>
    page(
      reply,
      v.tokensPage(
        ctx(
          req,
          reply,
          issued ? { kind: 'ok', text: `API token "${issued.name}" created.` } : undefined,
        ),
        desk(req).apiTokens(),
        issued,
      ),
    )
  app.get('/tokens', (req, reply) => tokensPage(req, reply))
  app.post('/tokens', (req, reply) =>
    tokensPage(req, reply, desk(req).createApiToken(body(req).name)),
  )
  app.post('/tokens/:id/revoke', (req, reply) => {
    desk(req).revokeApiToken(param(req, 'id'))
    return reply.redirect('/admin/tokens', 303)
  })

  app.post('/admins/:id/disable', (req, reply) => {
    desk(req).disableAdmin(param(req, 'id'))
    return reply.redirect('/admin/admins', 303)
  })

  app.post('/admins/:id/role', (req, reply) => {
    desk(req).setAdminRole(param(req, 'id'), body(req).role)
    return reply.redirect('/admin/admins', 303)
  })

  // --- first start: print the setup URL ----------------------------------------------------
  app.addHook('onListen', async () => {
    const issued = admin.firstAdminToken()
    if (!issued) return
    const addr = app.server.address()
    const port = addr && typeof addr === 'object' ? addr.port : 0
    const base = fixedOrigin ? fixedOrigin.origin : `http://localhost:${port}`
    const url = `${base}/admin/setup?token=${encodeURIComponent(issued.token)}`
    if (opts.onSetupUrl) opts.onSetupUrl(url)
    else
      process.stderr.write(
        `\nNo admin yet. Enroll the first admin (owner) within 24 hours, once:\n  ${url}\n\n`,
      )
  })
}
