// The WL3 lookups' successes answered before Fastify's request cycle (issue 18, lookups
// faster than nginx): a `request` listener put in front of Fastify's own on the same server
// answers GET /api/v1/wl3/{p0} and GET /api/v1/wl3/{p0}/cla when the lookup succeeds (200,
// or 304 on a matching If-None-Match) with the same status, headers and body as the
// routes (pop-agent/routes/wl3.ts; both take them from lib/pop-sync/lookup-response.ts),
// counted in the same request histogram and the same per-address budget (lib/address-budgets.ts,
// which is also the rate-limit plugin's store). Everything else goes to Fastify unchanged:
// other routes and methods (HEAD too), other URL forms, a client over its budget (the
// plugin refuses it with its coded 429), and a lookup that fails (the route throws that
// very error, so it is looked up and reported once), and every request once the app is closing.
//
// Fastify's cycle (routing, the request and reply objects, hooks, the async request-id and
// metrics hooks) cost a cache hit about three times what nginx spends on the same answer
// (docs/performance.md "Lookups against nginx"). The listener is swapped on Fastify's own
// server rather than given through `serverFactory`, which would have to recreate that
// server's time limits and TLS. Not logged per request (the errors Fastify answers are).
import { randomUUID } from 'node:crypto'
import type { IncomingMessage, ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import type { FastifyInstance } from 'fastify'
import type { AddressBudgets, BudgetState } from '../lib/address-budgets.js'
import type { TrustProxy } from '../lib/auth/trust-proxy.js'
import type { Metrics } from '../lib/metrics.js'
import type { Wl3Lookup } from '../lib/pop-sync/lookup.js'
import { lookupTarget, wl3Response } from '../lib/pop-sync/lookup-response.js'

/** What {@link installFastLookups} needs. */
export interface FastLookupsOptions {
  lookup: Pick<Wl3Lookup, 'latest' | 'checkpoint'>
  metrics: Metrics
  /** The lookup routes' per-address budgets (shared with their rate-limit plugin); none = no limit. */
  budgets?: AddressBudgets | undefined
  /** The budget a client address counts against (pop-agent/app.ts `rateLimitKey`). */
  keyOf: (ip: string) => string
  /** The app's `trustProxy`: the client address is then found as Fastify finds it. */
  trustProxy?: TrustProxy | undefined
}

type ProxyAddr = {
  all(req: IncomingMessage, trust: (addr: string, i: number) => boolean): string[]
  compile(list: string[]): (addr: string, i: number) => boolean
}

/**
 * Fastify's own copy of @fastify/proxy-addr (what `request.ip` uses under `trustProxy`),
 * resolved from Fastify's folder: both paths name the same client address by construction.
 */
function fastifyProxyAddr(): ProxyAddr {
  const fromHere = createRequire(import.meta.url)
  return createRequire(fromHere.resolve('fastify'))('@fastify/proxy-addr') as ProxyAddr
}

/** Lookup errors the fast path met, for the route to throw (pop-agent/routes/wl3.ts). */
const failures = new WeakMap<IncomingMessage, unknown>()

/**
 * The error the fast path's lookup of this request threw, if it did: the route throws it
 * instead of looking up again (one miss, one damage report per request).
 */
export function fastLookupFailure(req: IncomingMessage): { err: unknown } | undefined {
  if (!failures.has(req)) return undefined
  const err = failures.get(req)
  failures.delete(req)
  return { err }
}

const PAYLOAD_ROUTE = '/api/v1/wl3/:p0'
const CLA_ROUTE = '/api/v1/wl3/:p0/cla'
const SIGNATURE = { signature: true } as const
const NO_SIGNATURE = {} as const

/**
 * Puts the fast path in front of `app`'s request handler (see the file's head). Call it
 * once the routes it stands for are registered on `app`.
 */
export function installFastLookups(app: FastifyInstance, o: FastLookupsOptions): void {
  const server = app.server
  const handlers = server.listeners('request')
  if (handlers.length !== 1)
    throw new Error('installFastLookups: expected Fastify’s one request listener')
  const fastify = handlers[0] as (req: IncomingMessage, res: ServerResponse) => void
  const { lookup, budgets, keyOf } = o
  // TrustProxy is off or a list of addresses (lib/auth/trust-proxy.ts refuses `true` and hop
  // counts), which Fastify hands to proxy-addr's compile() just so: the same trust function,
  // so the same client address. Another kind of value would need Fastify's mapping here.
  const proxy = o.trustProxy ? fastifyProxyAddr() : undefined
  const trust = proxy && o.trustProxy ? proxy.compile(o.trustProxy) : undefined
  const clientIp = (req: IncomingMessage): string | undefined => {
    if (!proxy || !trust) return req.socket.remoteAddress
    const addrs = proxy.all(req, trust)
    return addrs[addrs.length - 1]
  }
  const observe = {
    payload200: o.metrics.requestObserver('GET', PAYLOAD_ROUTE, 200),
    payload304: o.metrics.requestObserver('GET', PAYLOAD_ROUTE, 304),
    cla200: o.metrics.requestObserver('GET', CLA_ROUTE, 200),
    cla304: o.metrics.requestObserver('GET', CLA_ROUTE, 304),
  }

  /**
   * Answers `req` and returns true, or returns false having written nothing. `counted`
   * gets the budget key once the request is counted, for the listener to give back.
   */
  const answer = (
    req: IncomingMessage,
    res: ServerResponse,
    counted: { key?: string },
  ): boolean => {
    const t0 = performance.now()
    if (req.method !== 'GET' || req.url === undefined) return false
    const target = lookupTarget(req.url)
    if (target === undefined) return false
    let key: string | undefined
    let budget: BudgetState | undefined
    if (budgets) {
      const ip = clientIp(req)
      if (ip === undefined) return false
      key = keyOf(ip)
      budget = budgets.tryCount(key)
      if (budget === undefined) return false // over budget: the plugin counts and refuses it
      counted.key = key
    }
    let a
    try {
      a = lookup.latest(target.p0, target.form === 'cla' ? SIGNATURE : NO_SIGNATURE)
    } catch (err) {
      failures.set(req, err) // the listener gives the count back: the plugin counts it
      return false
    }
    const r = wl3Response(a, target.form, req.headers['if-none-match'])
    // the routes' headers in their order: the plugin's (onRequest), the route's, the
    // onSend hooks' (request id, then checkpoint), Fastify's content-length
    const h: Record<string, string | number> = {}
    if (budgets && budget) {
      h['x-ratelimit-limit'] = budgets.max
      h['x-ratelimit-remaining'] = Math.max(0, budgets.max - budget.current)
      h['x-ratelimit-reset'] = Math.ceil(budget.ttl / 1000)
    }
    h['etag'] = r.etag
    h['cache-control'] = 'no-cache'
    h['x-clavitor-seq'] = r.seq
    if (r.body) h['content-type'] = r.contentType!
    h['x-request-id'] = randomUUID()
    const f = lookup.checkpoint()
    if (f) h['clavitor-checkpoint'] = f.header
    if (r.body) h['content-length'] = String(r.body.length)
    res.writeHead(r.status, h)
    if (r.body) res.end(r.body)
    else res.end()
    const s = (performance.now() - t0) / 1000
    if (target.form === 'payload') (r.status === 200 ? observe.payload200 : observe.payload304)(s)
    else (r.status === 200 ? observe.cla200 : observe.cla304)(s)
    return true
  }

  let closing = false
  app.addHook('preClose', (done) => {
    closing = true // Fastify answers from now on (its 503 while closing)
    done()
  })
  server.removeListener('request', fastify)
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    if (closing) return fastify(req, res)
    const counted: { key?: string } = {}
    let answered: boolean
    try {
      answered = answer(req, res, counted)
    } catch (err) {
      // Anything unexpected (the checkpoint's read, an odd forwarded header, a header value
      // Node refuses) must not escape a server listener, where it would end the process.
      // Nothing written yet: Fastify answers as it would have without the fast path (its
      // route meets the same fault and reports it as a coded 500). Already writing: the
      // answer cannot be trusted whole, so the connection goes.
      if (res.headersSent) {
        app.log.error({ err }, 'the fast lookup path failed while answering')
        if (!res.writableEnded) res.destroy()
        return
      }
      failures.delete(req)
      answered = false
    }
    if (answered) return
    if (budgets && counted.key !== undefined) budgets.uncount(counted.key) // the plugin counts it
    fastify(req, res)
  })
}
