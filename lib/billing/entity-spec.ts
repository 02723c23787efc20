// The contract every billing entity fulfils: what a description (entities-*.ts) says about
// one Paddle object kind, so that the one dual-write mechanism (crud, push, snapshots) never
// needs to know which entity it is handling. Types only; the descriptions are in the
// entities-*.ts files and the registry in entities.ts.
import type { TSchema } from '@sinclair/typebox'
import type { Db } from '../db/open.js'

export const ENTITY_NAMES = [
  'products',
  'prices',
  'customers',
  'discounts',
  'addresses',
  'businesses',
  'transactions',
  'subscriptions',
  'adjustments',
] as const
/** In this order the retry worker pushes rows, so a parent reaches Paddle before its child. */
export type EntityName = (typeof ENTITY_NAMES)[number]

export type Row = Record<string, unknown> & { id: string }
export type PaddleObj = Record<string, unknown> & { id: string }

export interface MapCtx {
  db: Db
  /** Paddle's id of one of our rows; throws CLA_ERR_BILLING_DEPENDENCY_PENDING when it has none yet. */
  paddleIdOf(entity: EntityName, ourId: string): string
  /** Our id for a Paddle id, or Paddle's id itself when the object is unknown here. */
  ourIdOf(entity: EntityName, paddleId: string | null | undefined): string | null
}

export interface EntitySpec {
  name: EntityName
  table: string
  /** Our id prefix (Paddle's prefix is `paddlePrefix`). */
  prefix: string
  paddlePrefix: string
  /** Webhook entity name (`customer` in `customer.updated`). */
  eventName: string
  create: TSchema
  update: TSchema
  /** Columns stored as JSON text. */
  json: string[]
  /** Columns stored as 0/1. */
  bool: string[]
  /** Extra checks and derived columns beyond the schema (throws typed errors). */
  prepare?(db: Db, cols: Record<string, unknown>, existing: Row | undefined): void
  /** Paddle collection path for this row (may need a parent's Paddle id). Null = not created directly. */
  collection(row: Row, ctx: MapCtx): string | null
  item(row: Row, ctx: MapCtx, paddleId: string): string
  toPaddle(row: Row, ctx: MapCtx, op: 'create' | 'update'): Record<string, unknown>
  /** Mirror columns from a Paddle snapshot. */
  fromPaddle(o: PaddleObj, ctx: MapCtx): Record<string, unknown>
  /** Columns Paddle owns: taken from every answer, even while our row is pending. */
  paddleOwned: string[]
  /** Page size for find-before-create lists. */
  perPage: number
  /** Paddle cannot change it after creation (adjustments): update() refuses. */
  immutable?: boolean
  /**
   * References a webhook never changes on a row we hold: a subscription, an address, a
   * business stays with its customer. A snapshot naming another is parked, not applied
   * (billing.applySnapshot; docs/billing.md "Parked events").
   */
  webhookFixed?: readonly string[]
  /** Extra query for find-before-create lists (e.g. transaction_id). */
  findQuery?(row: Row, ctx: MapCtx): Record<string, string>
  /**
   * Is this Paddle object the one our row created? Default: custom_data.clavitor_id ===
   * row.id. Entities without custom_data (adjustments) compare their fields instead.
   */
  matches?(row: Row, o: PaddleObj, ctx: MapCtx): boolean
}
