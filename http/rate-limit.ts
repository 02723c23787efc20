// The two-stage rate limit of our JSON APIs (server/routes/credentials.ts, the admin API in
// server/admin/api.ts): per client address before authentication, so a caller without a
// key costs no work, then a budget per key or token once it is known (createRateLimit in
// a preValidation hook). Both answer a coded 429 with Retry-After.
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { AddressBudgets, BudgetState } from '../lib/address-budgets.js'
import { claError, type ErrorCode } from '../lib/errors.js'

/** The coded error for an exceeded limit (the plugin's errorResponseBuilder shape). */
export function limitedError(code: ErrorCode) {
  return (_req: FastifyRequest, ctx: { max: number; after: string; ttl: number }) =>
    claError(code, `rate limit of ${ctx.max} requests exceeded; retry in ${ctx.after}`, {
      details: { limit: ctx.max, retry_after_ms: ctx.ttl },
    })
}

/** Registers the per-address limit on every route of `app`, counted at onRequest. */
export async function limitPerAddress(
  app: FastifyInstance,
  o: { max: number; windowMs: number; code: ErrorCode },
): Promise<void> {
  await app.register(rateLimit, {
    max: o.max,
    timeWindow: o.windowMs,
    hook: 'onRequest',
    keyGenerator: (req) => `ip:${req.ip}`,
    errorResponseBuilder: limitedError(o.code),
  })
}

/**
 * A store for @fastify/rate-limit (its `store` option) that counts in `budgets`: code that
 * answers before Fastify (pop-agent/fast-lookups.ts) counts in the same budgets, so a client
 * has one budget whichever path answers it. The plugin's `timeWindow` and `max` must be the
 * budgets' own.
 */
export function budgetStore(budgets: AddressBudgets) {
  return class BudgetStore {
    incr(key: string, cb: (err: Error | null, res: BudgetState) => void): void {
      cb(null, budgets.count(key))
    }
    child(): BudgetStore {
      return this
    }
  }
}
