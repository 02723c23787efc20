// More than one Paddle object for one of our rows: the objects whose custom_data carries
// the same clavitor_id. Products, prices, discounts and transactions have no natural key at
// Paddle, so a create that landed after we had given up and created again (later than the
// settle window of push.ts) makes a twin nothing else stops. This scan lists them all,
// keeps the one our row is linked to, archives an extra product, price or discount that
// nothing at Paddle uses, and only reports the rest: a twin transaction is a second
// invoice, which needs a person (cancel or refund at Paddle), so it raises an alarm.
// Customers cannot be twins (Paddle's 409 on the email).
import type { BillingContext } from './context.js'
import { ENTITIES, type PaddleObj } from './entities.js'
import { CUSTOM_ID_KEY } from './ids.js'
import { loadRow } from './references.js'

/**
 * Entities that can get twins at Paddle (no natural key there), so the duplicate scan lists them.
 */
export const DUPLICATE_ENTITIES = ['products', 'prices', 'discounts', 'transactions'] as const
/** One of {@link DUPLICATE_ENTITIES}. */
export type DuplicateEntity = (typeof DUPLICATE_ENTITIES)[number]

/** `status=` so the lists show every object, not only active ones. */
const ALL_STATUSES: Record<DuplicateEntity | 'subscriptions', string | undefined> = {
  products: 'active,archived',
  prices: 'active,archived',
  discounts: 'active,archived,expired,used',
  transactions: undefined, // every status by default
  subscriptions: 'active,canceled,past_due,paused,trialing',
}

/** A Paddle object beyond the one our row is linked to, and what was done with it. */
export interface DuplicateExtra {
  /** Its Paddle id. */
  paddle_id: string
  /** Its status at Paddle. */
  status: string
  /**
   * archived: done now; would_archive: a dry run; already_archived: nothing to do;
   * reported: left alone, needs a person (`reason` says why).
   */
  action: 'archived' | 'would_archive' | 'already_archived' | 'reported'
  /** Why that action. */
  reason: string
  /** Our mirror row of this object (inserted by its webhook), if any. */
  mirror_row?: string
}

/** The Paddle objects that carry one of our ids (custom_data clavitor_id). */
export interface DuplicateGroup {
  /** Which entity. */
  entity: DuplicateEntity
  /** Our row's id. */
  clavitor_id: string
  /** Every Paddle object carrying this clavitor_id, oldest first. */
  paddle_ids: string[]
  /** The one our row is linked to, kept; null when our row is missing or linked to none of them. */
  kept: string | null
  /** Every object but the kept one. */
  extras: DuplicateExtra[]
}

/** What a duplicate scan found and did (Billing.duplicates). */
export interface DuplicateReport {
  /** Objects listed per entity. */
  scanned: Record<DuplicateEntity, number>
  /** Every id carried by more than one Paddle object. */
  groups: DuplicateGroup[]
  /** Extras archived in this run. */
  archived: number
  /** Extras left for a person (transactions, objects in use, rows not linked yet). */
  needs_attention: number
}

/** An audit row per group found (Billing wires it to the audit log). */
export type DuplicateAlarm = (ev: {
  outcome: 'alarm' | 'ok'
  reason: string
  data: Record<string, unknown>
}) => void

const idOf = (v: unknown): string | null =>
  typeof v === 'string'
    ? v
    : v && typeof v === 'object' && typeof (v as { id?: unknown }).id === 'string'
      ? (v as { id: string }).id
      : null

async function listAll(
  ctx: BillingContext,
  path: string,
  perPage: number,
  status: string | undefined,
): Promise<PaddleObj[]> {
  const out: PaddleObj[] = []
  const query: Record<string, string> = { order_by: 'id[ASC]', per_page: String(perPage) }
  if (status) query.status = status
  for await (const page of ctx.paddle!.pages(path, query)) out.push(...page)
  return out
}

/** What at Paddle refers to each price, product and discount: `what` → its users. */
function usage(subs: PaddleObj[], txns: PaddleObj[], prices: PaddleObj[]): Map<string, string[]> {
  const used = new Map<string, string[]>()
  const use = (what: string | null, by: string) => {
    if (what) used.set(what, [...(used.get(what) ?? []), by])
  }
  const productOfPrice = new Map(prices.map((p) => [p.id, idOf(p.product_id)]))
  for (const p of prices) if (p.status !== 'archived') use(idOf(p.product_id), p.id)
  for (const o of [...subs, ...txns]) {
    for (const it of (o.items as Array<Record<string, unknown>> | undefined) ?? []) {
      const price = idOf(it.price_id) ?? idOf(it.price)
      use(price, o.id)
      const product =
        idOf((it.price as Record<string, unknown> | undefined)?.product_id) ??
        (price ? (productOfPrice.get(price) ?? null) : null)
      use(product, o.id)
    }
    use(idOf(o.discount_id) ?? idOf(o.discount), o.id)
  }
  return used
}

/**
 * Lists products, prices, discounts and transactions at Paddle, groups them by
 * custom_data.clavitor_id and, for each group of more than one, keeps the object our row
 * is linked to and archives the extras nothing uses (`resolve`; a dry run reports
 * `would_archive`). Transactions, objects in use and groups our row is not linked into
 * are reported only, with an alarm.
 */
export async function findDuplicates(
  ctx: BillingContext,
  opts: { resolve?: boolean; alarm?: DuplicateAlarm } = {},
): Promise<DuplicateReport> {
  const listed = {} as Record<DuplicateEntity, PaddleObj[]>
  for (const e of DUPLICATE_ENTITIES)
    listed[e] = await listAll(ctx, `/${e}`, ENTITIES[e].perPage, ALL_STATUSES[e])
  const subs = await listAll(ctx, '/subscriptions', 200, ALL_STATUSES.subscriptions)
  const used = usage(subs, listed.transactions, listed.prices)

  const report: DuplicateReport = {
    scanned: Object.fromEntries(DUPLICATE_ENTITIES.map((e) => [e, listed[e].length])) as Record<
      DuplicateEntity,
      number
    >,
    groups: [],
    archived: 0,
    needs_attention: 0,
  }
  for (const entity of DUPLICATE_ENTITIES) {
    const spec = ENTITIES[entity]
    const byOurId = new Map<string, PaddleObj[]>()
    for (const o of listed[entity]) {
      const ours = (o.custom_data as Record<string, unknown> | null | undefined)?.[CUSTOM_ID_KEY]
      if (typeof ours === 'string') byOurId.set(ours, [...(byOurId.get(ours) ?? []), o])
    }
    for (const [ourId, objs] of byOurId) {
      if (objs.length < 2) continue
      objs.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
      const row = loadRow(ctx.db, spec.table, ourId)
      const kept = objs.some((o) => o.id === row?.paddle_id) ? String(row!.paddle_id) : null
      const group: DuplicateGroup = {
        entity,
        clavitor_id: ourId,
        paddle_ids: objs.map((o) => o.id),
        kept,
        extras: [],
      }
      for (const o of objs) {
        if (o.id === kept) continue
        const mirror = ctx.db
          .prepare(`SELECT id FROM ${spec.table} WHERE paddle_id = ?`)
          .get(o.id) as { id: string } | undefined
        const extra: DuplicateExtra = {
          paddle_id: o.id,
          status: String(o.status ?? ''),
          action: 'reported',
          reason: '',
          ...(mirror ? { mirror_row: mirror.id } : {}),
        }
        const users = used.get(o.id) ?? []
        if (entity === 'transactions') {
          extra.reason = `a second transaction (invoice) for ${ourId}: cancel or refund it at Paddle by hand`
        } else if (!kept) {
          extra.reason = row
            ? `our row ${ourId} is linked to none of them yet: let its push settle (billing retry), then run this again`
            : `no row ${ourId} here`
        } else if (o.status !== 'active') {
          extra.action = 'already_archived'
          extra.reason = `status ${String(o.status)}`
        } else if (users.length) {
          extra.reason = `in use at Paddle by ${users.slice(0, 5).join(', ')}${users.length > 5 ? ', …' : ''}`
        } else if (!opts.resolve) {
          extra.action = 'would_archive'
          extra.reason = 'unused twin'
        } else {
          await ctx.paddle!.patch(`/${entity}/${o.id}`, { status: 'archived' })
          extra.action = 'archived'
          extra.status = 'archived'
          extra.reason = 'unused twin'
          report.archived += 1
        }
        if (extra.action === 'reported') report.needs_attention += 1
        group.extras.push(extra)
      }
      report.groups.push(group)
      const attention = group.extras.filter((x) => x.action === 'reported')
      opts.alarm?.({
        outcome: attention.length ? 'alarm' : 'ok',
        reason: attention.length ? 'needs_person' : opts.resolve ? 'resolved' : 'dry_run',
        data: {
          entity,
          clavitor_id: ourId,
          dry_run: !opts.resolve,
          kept,
          extras: group.extras.map((x) => ({
            paddle_id: x.paddle_id,
            action: x.action,
            reason: x.reason,
          })),
        },
      })
    }
  }
  return report
}
