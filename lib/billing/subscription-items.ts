// A subscription's items follow every Paddle snapshot of it (a push's answer, a webhook):
// added, removed and changed quantities alike, so a subscription changed or made at Paddle
// has the same items here (and so the same plan limits, entitlements.ts). Items are named
// by our price id, or by Paddle's when the price is not mirrored here (yet). Not called
// while one of our own changes waits for Paddle (`pending_change`): then the items are
// the ones we decided.
import type { Db } from '../db/open.js'
import type { MapCtx, PaddleObj, Row } from './entity-spec.js'

export function syncItemsFromPaddle(db: Db, row: Row, obj: PaddleObj, map: MapCtx): void {
  if (!Array.isArray(obj.items)) return // an answer without items says nothing about them
  const items = (obj.items as Array<Record<string, unknown>>).flatMap((it) => {
    const price = (it.price ?? null) as { id?: string; billing_cycle?: unknown } | null
    const pid = price?.id ?? (typeof it.price_id === 'string' ? it.price_id : undefined)
    if (!pid) return []
    return [
      {
        price_id: map.ourIdOf('prices', pid) ?? pid,
        quantity: Number(it.quantity ?? 1),
        status: typeof it.status === 'string' ? it.status : 'active',
        recurring: it.recurring === false || price?.billing_cycle === null ? 0 : 1,
        raw: JSON.stringify(it),
      },
    ]
  })
  db.prepare('DELETE FROM subscription_items WHERE subscription_id = ?').run(row.id)
  const ins = db.prepare(
    `INSERT INTO subscription_items (subscription_id, price_id, quantity, status, recurring, raw)
     VALUES (@sub, @price_id, @quantity, @status, @recurring, @raw)
     ON CONFLICT (subscription_id, price_id) DO NOTHING`,
  )
  for (const it of items) ins.run({ sub: row.id, ...it })
}
