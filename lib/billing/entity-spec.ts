// The contract every billing entity fulfils: what a description (entities-*.ts) says about
// one Paddle object kind, so that the one dual-write mechanism (crud, push, snapshots) never
// needs to know which entity it is handling. Types only; the descriptions are in the
// entities-*.ts files and the registry in entities.ts.
import type { TSchema } from '@sinclair/typebox'
import type { Db } from '../db/open.js'
import type { PaddleClient } from './paddle-client.js'

/**
 * The billing entities, in this order the retry worker pushes rows, so a parent reaches Paddle
 * before its child.
 */
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
/** One of {@link ENTITY_NAMES}. */
export type EntityName = (typeof ENTITY_NAMES)[number]

export type Row = Record<string, unknown> & { id: string }
export type PaddleObj = Record<string, unknown> & { id: string }

export interface MapCtx {
  db: Db
  /** Paddle's id of one of our rows; throws CLA_ERR_BILLING_DEPENDENCY_PENDING when it has none yet. */
  paddleIdOf(entity: EntityName, ourId: string): string
  /** Our id for a Paddle id, or Paddle's id itself when the object is unknown here. */
  ourIdOf(entity: EntityName, paddleId: string | null | undefined): string | null
  /**
   * The row whose Paddle object stands for this one (the entity's `billedThrough` hook: a
   * department billed through its parent's customer), or null when it has its own (or
   * does not exist). `paddleIdOf` already follows it.
   */
  billedThrough(entity: EntityName, ourId: string): string | null
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
  /**
   * A row with no object of its own at Paddle: our id of the row (same entity) whose Paddle
   * object stands for it (customers: a department billed through its parent's customer,
   * docs/billing.md). Its push sends nothing; `paddleIdOf` answers with that row's id, so
   * its children (addresses, subscriptions…) are made under that object at Paddle.
   */
  billedThrough?(row: Row): string | null
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
   * (snapshots.ts; docs/billing.md "Parked events").
   */
  webhookFixed?: readonly string[]
  /** Extra query for find-before-create lists (e.g. transaction_id). */
  findQuery?(row: Row, ctx: MapCtx): Record<string, string>
  /**
   * Is this Paddle object the one our row created? Default: custom_data.clavitor_id ===
   * row.id. Entities without custom_data (adjustments) compare their fields instead.
   */
  matches?(row: Row, o: PaddleObj, ctx: MapCtx): boolean

  // --- hooks: where an entity differs from the common flow (all optional) -----------------
  // The mechanism (crud.ts, push.ts, snapshots.ts) never asks which entity it holds; what
  // one entity does differently is said here, so a new entity is a description only.

  /** Column `list({ customer_id })` filters on; unset: the entity has no customer and the filter is ignored. */
  customerColumn?: string
  /** More fields for the API's view of a row (subscriptions: their items). */
  present?(db: Db, row: Row): Record<string, unknown>
  /**
   * Writes a new object's rows inside create's transaction (default: one pending row) and
   * names the row to push (subscriptions: their row, items and the transaction that makes
   * them at Paddle, which is pushed).
   */
  insertNew?(
    w: WriteCtx,
    id: string,
    cols: Record<string, unknown>,
    nowUs: number,
  ): { entity: EntityName; id: string }
  /** Brings a row without a Paddle id to Paddle instead of POSTing to `collection` (subscriptions). */
  pushNew?(p: PushCtx, row: Row): Promise<void>
  /** Paddle refused a create: the existing object to adopt, or rethrows (customers: 409 on the email). */
  recoverCreate?(p: PushCtx, row: Row, err: unknown): Promise<PaddleObj>
  /** After a push merged Paddle's answer: what else to push (a transaction's subscription). */
  afterPush?(p: PushCtx, row: Row): Promise<void>
  /** An object an earlier attempt created is merged as found, not PATCHed with our fields (transactions). */
  adoptAsIs?: boolean
  /** `status=` for find-before-create lists: Paddle lists only active objects unless told. */
  findStatus?: string
  /** Our row for a snapshot that neither paddle_id nor custom_data links (subscriptions: via their transaction). */
  snapshotRow?(db: Db, obj: PaddleObj): Row | undefined
  /** Completes the columns of an object unknown to us, inserted as a mirror from a webhook. */
  mirror?(cols: Record<string, unknown>, obj: PaddleObj, ctx: MapCtx): void
  /**
   * References a mirror of an object made at Paddle cannot do without (an address's
   * customer): a snapshot lacking one is parked with the reason (and can be replayed once
   * it can be placed), never a failed insert.
   */
  mirrorNeeds?: readonly string[]
  /** Statuses a webhook never changes: once there, the row stays (a canceled subscription). */
  finalStatuses?: readonly string[]
  /** A webhook that links this row (gives it its Paddle id) completes its push: nothing else to send. */
  linkCompletesPush?: boolean
  /**
   * Sends a change of ours that is more than a PATCH of the row's fields (a subscription's
   * cancel, pause, resume, items, discount) and returns Paddle's object to merge; undefined
   * when there is none waiting (the default PATCH runs).
   */
  pushChange?(p: PushCtx, row: Row): Promise<PaddleObj | undefined>
  /**
   * Columns that stay ours while the row's `pending_change` is set (an action decided here
   * and not yet confirmed by Paddle): neither a push's merge nor a webhook changes them.
   */
  heldWhileChanging?: readonly string[]
  /**
   * After a create or update of ours: the customer whose tree's subscriptions must have
   * their MSP margin re-evaluated (margins.ts), or null (a discount made for an MSP; a
   * customer moved to another parent).
   */
  marginScope?(row: Row, before: Row | undefined): string | null
  /** After Paddle's object was merged into our row (push or webhook): child rows to follow it (subscription items). */
  afterMerge?(db: Db, row: Row, obj: PaddleObj, ctx: MapCtx): void
}

/** What an insertNew hook may use: the open transaction's database and the one row insert. */
export interface WriteCtx {
  db: Db
  /** The billing clock, ms: for new ids. */
  nowMs(): number
  /** Inserts a new pending row (created_at = updated_at = pending_since = nowUs, attempts 0). */
  insert(spec: EntitySpec, id: string, cols: Record<string, unknown>, nowUs: number): void
}

/** What the push hooks may use; they run only when Paddle is configured. */
export interface PushCtx {
  paddle: PaddleClient
  map: MapCtx
  load(spec: EntitySpec, id: string): Row | undefined
  /** One leased attempt for another row (its failure is recorded on that row). */
  push(entity: EntityName, id: string): Promise<boolean>
  /** Merges Paddle's answer into a row (clears pending when `clear` and the row is unchanged). */
  merge(spec: EntitySpec, row: Row, obj: PaddleObj, clear: boolean): void
}
