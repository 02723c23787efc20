// Helpers for mapping our rows to Paddle's request bodies and Paddle's snapshots back to
// columns: dropping unset fields, JSON columns, custom_data with and without our keys.
import { CUSTOM_ID_KEY } from './ids.js'
import type { MapCtx, PaddleObj, Row } from './entity-spec.js'

/** Removes null/undefined so Paddle gets only what we set. */
export function clean(o: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(o)) if (v !== null && v !== undefined) out[k] = v
  return out
}

export function parseJson(v: unknown): unknown {
  if (typeof v !== 'string') return v ?? null
  try {
    return JSON.parse(v)
  } catch {
    return null
  }
}

/** custom_data sent to Paddle: the caller's keys plus our id (and any extra keys of ours). */
export function customData(row: Row, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const user = (parseJson(row.custom_data) as Record<string, unknown> | null) ?? {}
  return { ...user, ...extra, [CUSTOM_ID_KEY]: row.id }
}

/** custom_data from Paddle without our own clavitor_* keys; null when nothing is left. */
export function userCustomData(cd: unknown): string | null {
  if (!cd || typeof cd !== 'object') return null
  const out: Record<string, unknown> = {}
  for (const [k, v] of Object.entries(cd as Record<string, unknown>))
    if (!k.startsWith('clavitor_')) out[k] = v
  return Object.keys(out).length ? JSON.stringify(out) : null
}

/**
 * custom_data naming the customer of ours a row belongs to, when Paddle knows that customer
 * only through another (a department billed through its parent's ctm_): the way back from
 * Paddle's snapshot to the department (`customerFromPaddle`). Empty otherwise.
 */
export function customerCustomData(ctx: MapCtx, customerId: unknown): Record<string, unknown> {
  return typeof customerId === 'string' && ctx.billedThrough('customers', customerId) !== null
    ? { [CUSTOMER_KEY]: customerId }
    : {}
}

/**
 * Our customer for a snapshot's `customer_id`: the customer named in its custom_data when
 * that one is billed through this Paddle customer (a department under its parent's ctm_),
 * else whoever holds the ctm_ here (or Paddle's id when nobody does).
 */
export function customerFromPaddle(o: PaddleObj, ctx: MapCtx): string | null {
  const holder = ctx.ourIdOf('customers', str(o.customer_id))
  const named = (o.custom_data as Record<string, unknown> | null | undefined)?.[CUSTOMER_KEY]
  if (holder && typeof named === 'string' && ctx.billedThrough('customers', named) === holder)
    return named
  return holder
}

/** The custom_data key that names our customer of a row billed through another's ctm_. */
export const CUSTOMER_KEY = 'clavitor_customer_id'

export const str = (v: unknown): string | null =>
  typeof v === 'string' ? v : v === null || v === undefined ? null : String(v)
export const bool = (v: unknown): number => (v ? 1 : 0)

/** Paddle's lists show active objects only unless told: a retry looks among archived ones too. */
export const ACTIVE_AND_ARCHIVED = 'active,archived'
