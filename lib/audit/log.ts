// The tamper-evident audit log: the `events` table, hash-chained.
//
// Each row's `hash` is sha256 (lowercase hex) over a canonical encoding of the row's own
// fields AND the previous row's hash (`prev_hash`), so editing, deleting or reordering a
// row breaks the chain at that row (or the next one). The first row's prev_hash is
// GENESIS_HASH (64 zeros).
//
// Canonical encoding (version 1), exactly:
//   "clavitor-audit-v1\n" + JSON.stringify([id, at, kind, actor, outcome, reason, ip,
//                                           route, fingerprint, data, prev_hash])
// where absent optional fields are JSON null, `at` and `id` are integers and `data` is the
// JSON text stored in the row (JSON.stringify of the caller's value, or null).
//
// Deleting the LAST rows, or rewriting the whole table, cannot be seen from the table
// alone: anchors (lib/audit/anchor.ts) record the chain head outside the table.
//
// appendEvent is synchronous and atomic. Called inside a caller's better-sqlite3
// transaction it becomes a savepoint of it: if the caller rolls back, so is the event.
import { createHash } from 'node:crypto'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { claError } from '../errors.js'
import { isAuditKind, type AuditKind } from './kinds.js'

/** The prev_hash of the first row: 64 zeros. */
export const GENESIS_HASH = '0'.repeat(64)
/** Prefix of the canonical encoding a row's hash covers (version 1). */
export const CANONICAL_PREFIX = 'clavitor-audit-v1\n'

/** An event to append: kind, actor and outcome are required, the rest optional. */
export interface AuditEventInput {
  /** What happened: one of AUDIT_KINDS (lib/audit/kinds.ts). */
  kind: AuditKind
  /** Who: a POP id, a human id, 'system' or 'unknown'. */
  actor: string
  /** allowed | refused | ok | error | alarm | … */
  outcome: string
  /** Stable reason code (e.g. a CLA_ERR_… code or an auth reason). */
  reason?: string
  /** Client address, when the event comes from a request. */
  ip?: string
  /** Route or command the event comes from. */
  route?: string
  /** Certificate fingerprint (sha256 hex of the DER) when one was presented. */
  fingerprint?: string
  /** Any JSON-serialisable details. Stored as JSON text. */
  data?: unknown
  /** µs epoch; default now. */
  at?: number
}

/** A stored row of the audit log (table `events`), as hashed into the chain. */
export interface EventRow {
  /** Position in the chain: 1, 2, 3… with no gaps. */
  id: number
  /** µs since the Unix epoch. */
  at: number
  /** One of AUDIT_KINDS. */
  kind: string
  actor: string
  outcome: string
  reason: string | null
  ip: string | null
  route: string | null
  fingerprint: string | null
  /** JSON text as stored (parse with JSON.parse), or null. */
  data: string | null
  /** The previous row's hash ({@link GENESIS_HASH} for row 1). */
  prev_hash: string
  /** sha256 (lowercase hex) of this row's canonical encoding, prev_hash included. */
  hash: string
}

/**
 * What a walk of the chain found: its length and head when intact, else the first broken row
 * and why (`count`: rows that verified before it).
 */
export type VerifyResult =
  | { ok: true; count: number; head: { id: number; hash: string } | null }
  | { ok: false; firstBrokenId: number; reason: string; count: number }

/** A chain head recorded outside the table: the newest row's id and hash at some moment. */
export interface ChainAnchor {
  /** id of the row that was the head when the anchor was written (0 = empty table). */
  id: number
  /** that row's hash (GENESIS_HASH for an empty table). */
  hash: string
}

/** The canonical hash of a row (id and prev_hash included). */
export function hashEvent(row: Omit<EventRow, 'hash'>): string {
  const canonical = JSON.stringify([
    row.id,
    row.at,
    row.kind,
    row.actor,
    row.outcome,
    row.reason,
    row.ip,
    row.route,
    row.fingerprint,
    row.data,
    row.prev_hash,
  ])
  return createHash('sha256')
    .update(CANONICAL_PREFIX + canonical, 'utf8')
    .digest('hex')
}

const stmts = new WeakMap<Db, ReturnType<typeof prepare>>()
function prepare(db: Db) {
  return {
    head: db.prepare('SELECT id, hash FROM events ORDER BY id DESC LIMIT 1'),
    insert: db.prepare(
      `INSERT INTO events (id, at, kind, actor, outcome, reason, ip, route, fingerprint, data, prev_hash, hash)
       VALUES (@id, @at, @kind, @actor, @outcome, @reason, @ip, @route, @fingerprint, @data, @prev_hash, @hash)`,
    ),
  }
}
function statements(db: Db) {
  let s = stmts.get(db)
  if (!s) {
    s = prepare(db)
    stmts.set(db, s)
  }
  return s
}

function str(name: string, v: unknown, required: boolean): string | null {
  if (v === undefined || v === null) {
    if (required) throw claError('CLA_ERR_INVALID_INPUT', `audit event: ${name} is required`)
    return null
  }
  if (typeof v !== 'string' || (required && v.length === 0)) {
    throw claError('CLA_ERR_INVALID_INPUT', `audit event: ${name} must be a non-empty string`)
  }
  return v
}

/**
 * Appends one event to the chain and returns the stored row. Synchronous; runs in its own
 * (immediate) transaction, or as a savepoint of the caller's. Throws
 * CLA_ERR_AUDIT_WRITE_FAILED when the row cannot be written: callers on a security path
 * must then refuse (fail closed).
 */
export function appendEvent(db: Db, ev: AuditEventInput): EventRow {
  const base = {
    at: ev.at ?? nowMicros(),
    kind: str('kind', ev.kind, true)!,
    actor: str('actor', ev.actor, true)!,
    outcome: str('outcome', ev.outcome, true)!,
    reason: str('reason', ev.reason, false),
    ip: str('ip', ev.ip, false),
    route: str('route', ev.route, false),
    fingerprint: str('fingerprint', ev.fingerprint, false),
    data: ev.data === undefined ? null : (JSON.stringify(ev.data) ?? null),
  }
  if (!isAuditKind(base.kind))
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `audit event: unknown kind ${JSON.stringify(base.kind)}; add it to lib/audit/kinds.ts`,
    )
  if (!Number.isSafeInteger(base.at))
    throw claError('CLA_ERR_INVALID_INPUT', 'audit event: at must be an integer (µs)')
  try {
    const s = statements(db)
    const write = db.transaction((): EventRow => {
      const head = s.head.get() as { id: number; hash: string } | undefined
      const partial = { id: (head?.id ?? 0) + 1, ...base, prev_hash: head?.hash ?? GENESIS_HASH }
      const row: EventRow = { ...partial, hash: hashEvent(partial) }
      s.insert.run(row)
      return row
    })
    // immediate: take the write lock before reading the head, so two processes never
    // chain onto the same row. Inside a caller's transaction this is a savepoint.
    return db.inTransaction ? write() : write.immediate()
  } catch (cause) {
    throw claError(
      'CLA_ERR_AUDIT_WRITE_FAILED',
      `cannot write the audit log: ${(cause as Error).message}`,
      { cause },
    )
  }
}

/** The newest row's id and hash; { id: 0, hash: GENESIS_HASH } for an empty log. */
export function chainHead(db: Db): ChainAnchor {
  const head = statements(db).head.get() as { id: number; hash: string } | undefined
  return head ? { id: head.id, hash: head.hash } : { id: 0, hash: GENESIS_HASH }
}

/**
 * Walks the whole chain from the first row. Finds: an edited row (its hash no longer
 * matches), a deleted row (a gap in ids / the next row's prev_hash does not match), a
 * reordered row (ids are inside the hash). With `anchors`, also finds deleted trailing
 * rows and a rewritten table: every anchor's row must exist with the anchored hash.
 */
export function verifyChain(db: Db, opts: { anchors?: readonly ChainAnchor[] } = {}): VerifyResult {
  const rows = db
    .prepare(
      'SELECT id, at, kind, actor, outcome, reason, ip, route, fingerprint, data, prev_hash, hash FROM events ORDER BY id',
    )
    .iterate() as IterableIterator<EventRow>
  let expectedId = 1
  let prev = GENESIS_HASH
  let count = 0
  const hashes = new Map<number, string>()
  const anchorIds = new Set((opts.anchors ?? []).map((a) => a.id))
  for (const row of rows) {
    if (row.id !== expectedId) {
      return broken(
        row.id,
        `row ${expectedId}${row.id > expectedId + 1 ? `..${row.id - 1}` : ''} is missing (deleted)`,
        count,
      )
    }
    if (row.prev_hash !== prev) {
      return broken(
        row.id,
        `prev_hash does not match the hash of row ${row.id - 1} (row before edited or replaced)`,
        count,
      )
    }
    const { hash, ...rest } = row
    if (hashEvent(rest) !== hash)
      return broken(row.id, 'hash does not match the row contents (row edited)', count)
    if (anchorIds.has(row.id)) hashes.set(row.id, hash)
    prev = hash
    expectedId++
    count++
  }
  const lastId = expectedId - 1
  // Check anchors oldest first, so the first broken id is the earliest place to look.
  for (const a of [...(opts.anchors ?? [])].sort((x, y) => x.id - y.id)) {
    if (a.id === 0) continue
    if (a.id > lastId) {
      return broken(
        lastId + 1,
        `anchor names row ${a.id} but the log ends at row ${lastId} (trailing rows deleted)`,
        count,
      )
    }
    if (hashes.get(a.id) !== a.hash) {
      return broken(
        a.id,
        `row ${a.id} hash differs from the anchored hash (table rewritten)`,
        count,
      )
    }
  }
  return { ok: true, count, head: lastId === 0 ? null : { id: lastId, hash: prev } }
}

function broken(firstBrokenId: number, reason: string, count: number): VerifyResult {
  return { ok: false, firstBrokenId, reason, count }
}

/** Filters and paging of {@link listEvents}; every given field must match. */
export interface EventFilter {
  /** Exact kind. */
  kind?: string
  /** Matches kinds starting with this (e.g. 'pop.'). */
  kindPrefix?: string
  /** Exact actor. */
  actor?: string
  /** Exact outcome. */
  outcome?: string
  /** Exact reason. */
  reason?: string
  /** µs epoch, inclusive. */
  since?: number
  /** µs epoch, exclusive. */
  until?: number
  /** Paging: rows with id greater than this. */
  afterId?: number
  /** Paging: rows with id less than this. */
  beforeId?: number
  /** A whole number ≥ 1; default 100; more than 1000 reads 1000. */
  limit?: number
  /** Default 'desc' (newest first). */
  order?: 'asc' | 'desc'
}

/**
 * The paging numbers of a filter, checked where every caller (the CLI, the admin pages,
 * `core.audit.list`) comes through: a NaN, a fraction, a negative or a string would
 * otherwise reach the SQL (`LIMIT NaN` is an SQL error; a NaN bound binds as NULL and
 * silently matches nothing).
 */
function checkPaging(filter: EventFilter): number {
  const bad = (field: string, what: string) =>
    claError('CLA_ERR_INVALID_INPUT', `audit events: ${field} ${what}`, { details: { field } })
  for (const field of ['since', 'until', 'afterId', 'beforeId'] as const) {
    const v: unknown = filter[field]
    if (v !== undefined && !(Number.isSafeInteger(v) && (v as number) >= 0))
      throw bad(field, `must be a whole number ≥ 0, got ${String(v)}`)
  }
  const limit: unknown = filter.limit ?? 100
  if (!(Number.isSafeInteger(limit) && (limit as number) >= 1))
    throw bad('limit', `must be a whole number ≥ 1, got ${String(limit)}`)
  if (filter.order !== undefined && filter.order !== 'asc' && filter.order !== 'desc')
    throw bad('order', `must be 'asc' or 'desc', got ${String(filter.order)}`)
  return Math.min(limit as number, 1000)
}

/**
 * Reads events, filtered and paged. A paging number that is not a whole number in range
 * (NaN, a fraction, negative, a string) or an unknown order: CLA_ERR_INVALID_INPUT
 * (`details.field`).
 */
export function listEvents(db: Db, filter: EventFilter = {}): EventRow[] {
  const limit = checkPaging(filter)
  const where: string[] = []
  const args: Record<string, unknown> = {}
  const eq = (col: keyof EventFilter & string, v: unknown) => {
    if (v !== undefined) {
      where.push(`${col} = @${col}`)
      args[col] = v
    }
  }
  eq('kind', filter.kind)
  eq('actor', filter.actor)
  eq('outcome', filter.outcome)
  eq('reason', filter.reason)
  if (filter.kindPrefix !== undefined) {
    where.push(`substr(kind, 1, length(@kindPrefix)) = @kindPrefix`)
    args.kindPrefix = filter.kindPrefix
  }
  if (filter.since !== undefined) (where.push('at >= @since'), (args.since = filter.since))
  if (filter.until !== undefined) (where.push('at < @until'), (args.until = filter.until))
  if (filter.afterId !== undefined) (where.push('id > @afterId'), (args.afterId = filter.afterId))
  if (filter.beforeId !== undefined)
    (where.push('id < @beforeId'), (args.beforeId = filter.beforeId))
  const order = filter.order === 'asc' ? 'ASC' : 'DESC'
  const sql = `SELECT id, at, kind, actor, outcome, reason, ip, route, fingerprint, data, prev_hash, hash FROM events
    ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id ${order} LIMIT ${limit}`
  return db.prepare(sql).all(args) as EventRow[]
}

/** The audit handle on the core instance (`core.audit`). */
export class AuditLog {
  constructor(readonly db: Db) {}
  /**
   * Appends an event (see appendEvent). Throws CLA_ERR_INVALID_INPUT or CLA_ERR_AUDIT_WRITE_FAILED.
   */
  append(ev: AuditEventInput): EventRow {
    return appendEvent(this.db, ev)
  }
  /** Reads events, filtered and paged, newest first by default. */
  list(filter?: EventFilter): EventRow[] {
    return listEvents(this.db, filter)
  }
  /** Walks the whole chain (see verifyChain); with `anchors`, also checks each anchored row. */
  verify(opts?: { anchors?: readonly ChainAnchor[] }): VerifyResult {
    return verifyChain(this.db, opts)
  }
  /** The newest row's id and hash; `{ id: 0, hash: GENESIS_HASH }` when empty. */
  head(): ChainAnchor {
    return chainHead(this.db)
  }
}
