// Plans (tiers): what a subscription's prices entitle it to. Ours only, never at Paddle:
// Paddle bills prices; which price buys how much of Clavitor is our decision (the seed:
// flat-rate pricing, no metering, tier enforcement). docs/billing.md "Plans and limits".
//
// A plan is a name, the prices that sell it (a price belongs to at most one plan, so a
// subscription item names its plan without doubt) and two limits:
//   max_vaults             vaults one unit (quantity 1) of the plan pays for; null = no limit
//   max_devices_per_vault  device P0s each of those vaults may enrol; null = no limit
// How a subscription's items add up to its entitlements is entitlements.ts.
//
// Archiving a plan stops selling it (no new price may join, `billing plan list` hides it
// unless asked) but keeps every existing subscription's limits: a customer keeps what they
// bought. Every change is audited (plan.create, plan.update) in the same transaction.
import { Type, type Static, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'
import { appendEvent } from '../audit/log.js'
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { systemClock, type Clock } from '../clock.js'
import { newId } from './ids.js'
import { Id, schemaErrors, strict } from './schemas.js'

export const PLAN_PREFIX = 'pln'

const Limit = Type.Union([Type.Integer({ minimum: 0, maximum: 1_000_000 }), Type.Null()], {
  description: 'must be a whole number from 0 to 1000000, or null for no limit',
})
const Name = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: '\\S',
  description: 'must be 1 to 100 characters, not only spaces',
})
const PriceIds = Type.Array(Id, { minItems: 1, maxItems: 50, uniqueItems: true })

/** The schema of a new plan (TypeBox): name, the recurring price ids that sell it, both limits. */
export const PlanCreate = Type.Object(
  {
    name: Name,
    price_ids: PriceIds,
    max_vaults: Limit,
    max_devices_per_vault: Limit,
    description: Type.Optional(Type.String({ maxLength: 500 })),
  },
  strict,
)
/** A new plan: name, the recurring price ids that sell it, both limits (null: no limit). */
export type PlanCreate = Static<typeof PlanCreate>

/** The schema of a plan change (TypeBox): at least one field. */
export const PlanUpdate = Type.Object(
  {
    name: Type.Optional(Name),
    price_ids: Type.Optional(PriceIds),
    max_vaults: Type.Optional(Limit),
    max_devices_per_vault: Type.Optional(Limit),
    description: Type.Optional(Type.Union([Type.String({ maxLength: 500 }), Type.Null()])),
    status: Type.Optional(Type.Union([Type.Literal('active'), Type.Literal('archived')])),
  },
  { ...strict, minProperties: 1 },
)
/** A plan change: any of the fields of {@link PlanCreate}, and status; at least one. */
export type PlanUpdate = Static<typeof PlanUpdate>

/**
 * A plan (tier): the prices that sell it and the limits one unit of it buys. Ours only, never at
 * Paddle.
 */
export interface Plan {
  /** `pln_…` id. */
  id: string
  name: string
  /** Free text, at most 500 characters. */
  description: string | null
  /** Vaults one unit (quantity 1) pays for; null: no limit. */
  max_vaults: number | null
  /** Device P0s each of those vaults may enrol; null: no limit. */
  max_devices_per_vault: number | null
  /** archived: sold no more; existing subscriptions keep its limits. */
  status: 'active' | 'archived'
  /** Our price ids, sorted. */
  price_ids: string[]
  /** µs since the Unix epoch. */
  created_at: number
  /** µs since the Unix epoch. */
  updated_at: number
}

export interface PlanWriteOptions {
  /** Who did it, for the audit row. Default 'system'. */
  actor?: string
  clock?: Clock
}

function check<T>(schema: TSchema, input: unknown, what: string): T {
  if (Value.Check(schema, input)) return structuredClone(input) as T
  const errors = schemaErrors(schema, input)
  const first = errors[0]
  throw claError(
    'CLA_ERR_INVALID_INPUT',
    `plan ${what}: ${first ? `${first.path} ${first.message}` : 'invalid'}`,
    { details: { entity: 'plans', errors } },
  )
}

type PlanRow = Omit<Plan, 'price_ids'>

const SELECT_PLAN =
  'SELECT id, name, description, max_vaults, max_devices_per_vault, status, created_at, updated_at FROM plans'

function withPrices(db: Db, row: PlanRow): Plan {
  const price_ids = db
    .prepare('SELECT price_id FROM plan_prices WHERE plan_id = ? ORDER BY price_id')
    .pluck()
    .all(row.id) as string[]
  return { ...row, price_ids }
}

export function getPlan(db: Db, id: string): Plan | undefined {
  const row = db.prepare(`${SELECT_PLAN} WHERE id = ?`).get(id) as PlanRow | undefined
  return row && withPrices(db, row)
}

export function requirePlan(db: Db, id: string): Plan {
  const p = getPlan(db, id)
  if (!p)
    throw claError('CLA_ERR_NOT_FOUND', `plan ${id} does not exist`, { details: { plan: id } })
  return p
}

/** Plans by name; archived ones only when asked. */
export function listPlans(db: Db, opts: { archived?: boolean } = {}): Plan[] {
  const rows = db
    .prepare(`${SELECT_PLAN} WHERE (@all = 1 OR status = 'active') ORDER BY name, id`)
    .all({ all: opts.archived ? 1 : 0 }) as PlanRow[]
  return rows.map((r) => withPrices(db, r))
}

/**
 * The prices must be ours (or Paddle's id of a price we mirror), recurring, and in no
 * other plan: a subscription item then names exactly one plan.
 */
function resolvePrices(db: Db, ids: string[], planId: string): string[] {
  const out: string[] = []
  for (const given of ids) {
    const price = db
      .prepare('SELECT id, billing_interval FROM prices WHERE id = ? OR paddle_id = ?')
      .get(given, given) as { id: string; billing_interval: string | null } | undefined
    if (!price) {
      throw claError('CLA_ERR_NOT_FOUND', `price ${given} does not exist`, {
        details: { field: 'price_ids', price: given },
      })
    }
    if (price.billing_interval === null) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `price ${given} is one-time; a plan is sold by recurring prices`,
        { details: { field: 'price_ids', price: given } },
      )
    }
    const other = db
      .prepare(
        'SELECT p.id, p.name FROM plan_prices pp JOIN plans p ON p.id = pp.plan_id WHERE pp.price_id = ?',
      )
      .get(price.id) as { id: string; name: string } | undefined
    if (other && other.id !== planId) {
      throw claError(
        'CLA_ERR_BILLING_CONFLICT',
        `price ${given} already sells plan "${other.name}" (${other.id}); a price belongs to one plan`,
        { details: { field: 'price_ids', price: given, plan: other.id } },
      )
    }
    out.push(price.id)
  }
  return [...new Set(out)].sort()
}

function refuseDuplicateName(db: Db, name: string, planId: string): void {
  const other = db
    .prepare("SELECT id FROM plans WHERE name = ? AND id <> ? AND status = 'active'")
    .pluck()
    .get(name, planId) as string | undefined
  if (other) {
    throw claError(
      'CLA_ERR_BILLING_CONFLICT',
      `an active plan is named "${name}" already (${other})`,
      {
        details: { field: 'name', plan: other },
      },
    )
  }
}

export function createPlan(db: Db, input: unknown, opts: PlanWriteOptions = {}): Plan {
  const c = check<PlanCreate>(PlanCreate, input, 'create')
  const clock = opts.clock ?? systemClock
  return db
    .transaction((): Plan => {
      const id = newId(PLAN_PREFIX, clock.now())
      refuseDuplicateName(db, c.name, id)
      const prices = resolvePrices(db, c.price_ids, id)
      const at = clock.now() * 1000
      db.prepare(
        `INSERT INTO plans (id, name, description, max_vaults, max_devices_per_vault, status, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, 'active', ?, ?)`,
      ).run(id, c.name, c.description ?? null, c.max_vaults, c.max_devices_per_vault, at, at)
      const link = db.prepare('INSERT INTO plan_prices (price_id, plan_id) VALUES (?, ?)')
      for (const p of prices) link.run(p, id)
      const plan = requirePlan(db, id)
      appendEvent(db, {
        kind: 'plan.create',
        actor: opts.actor ?? 'system',
        outcome: 'ok',
        data: planAudit(plan),
      })
      return plan
    })
    .immediate()
}

/**
 * Changes a plan. Lowering a limit below what subscriptions use keeps what exists and
 * refuses new vaults and devices (the check is at creation, entitlements.ts). Replacing
 * `price_ids` moves subscriptions on a removed price off this plan: refused while a
 * subscription item still uses that price, so nobody loses their limits by accident.
 */
export function updatePlan(db: Db, id: string, patch: unknown, opts: PlanWriteOptions = {}): Plan {
  const c = check<PlanUpdate>(PlanUpdate, patch, 'update')
  const clock = opts.clock ?? systemClock
  return db
    .transaction((): Plan => {
      const before = requirePlan(db, id)
      if (c.name !== undefined && (c.status ?? before.status) === 'active')
        refuseDuplicateName(db, c.name, id)
      if (c.status === 'active' && before.status === 'archived')
        refuseDuplicateName(db, c.name ?? before.name, id)
      if (c.price_ids !== undefined) {
        if ((c.status ?? before.status) === 'archived' && before.status === 'archived') {
          throw claError(
            'CLA_ERR_INVALID_INPUT',
            `plan ${id} is archived; it sells no new prices`,
            {
              details: { field: 'price_ids' },
            },
          )
        }
        const next = resolvePrices(db, c.price_ids, id)
        const removed = before.price_ids.filter((p) => !next.includes(p))
        for (const p of removed) {
          const used = db
            .prepare(
              `SELECT COUNT(*) FROM subscription_items si JOIN subscriptions s ON s.id = si.subscription_id
               WHERE si.price_id = ? AND s.status <> 'canceled'`,
            )
            .pluck()
            .get(p) as number
          if (used > 0) {
            throw claError(
              'CLA_ERR_BILLING_CONFLICT',
              `price ${p} is on ${used} subscription(s); it cannot leave plan "${before.name}"`,
              { details: { field: 'price_ids', price: p, subscriptions: used } },
            )
          }
        }
        db.prepare('DELETE FROM plan_prices WHERE plan_id = ?').run(id)
        const link = db.prepare('INSERT INTO plan_prices (price_id, plan_id) VALUES (?, ?)')
        for (const p of next) link.run(p, id)
      }
      const at = clock.now() * 1000
      const set: Record<string, unknown> = {}
      for (const k of [
        'name',
        'description',
        'max_vaults',
        'max_devices_per_vault',
        'status',
      ] as const) {
        if (c[k] !== undefined) set[k] = c[k]
      }
      const cols = Object.keys(set)
      db.prepare(
        `UPDATE plans SET ${[...cols.map((k) => `${k} = @${k}`), 'updated_at = @at'].join(', ')} WHERE id = @id`,
      ).run({ ...set, at, id })
      const plan = requirePlan(db, id)
      appendEvent(db, {
        kind: 'plan.update',
        actor: opts.actor ?? 'system',
        outcome: 'ok',
        data: { ...planAudit(plan), changed: [...cols, ...(c.price_ids ? ['price_ids'] : [])] },
      })
      return plan
    })
    .immediate()
}

function planAudit(p: Plan): Record<string, unknown> {
  return {
    plan: p.id,
    name: p.name,
    status: p.status,
    max_vaults: p.max_vaults,
    max_devices_per_vault: p.max_devices_per_vault,
    prices: p.price_ids,
  }
}
