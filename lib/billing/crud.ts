// Our side of the dual write: validating input, writing our rows (pending) and reading them
// back as the API shows them. Nothing here talks to Paddle (push.ts does, after the write
// is committed: we lead, Paddle follows).
import { Value } from '@sinclair/typebox/value'
import { claError, isClavitorError } from '../errors.js'
import { load, nowMicros, type BillingContext } from './context.js'
import {
  ENTITIES,
  ENTITY_NAMES,
  entitySpec,
  parseJson,
  type EntityName,
  type EntitySpec,
  type Row,
} from './entities.js'
import type { WriteCtx } from './entity-spec.js'
import { newId } from './ids.js'
import { schemaErrors } from './schemas.js'

/**
 * A billing row as the API shows it: the entity's columns (JSON ones parsed) plus its
 * dual-write state. Times are µs since the Unix epoch.
 */
export type PublicRow = Record<string, unknown> & {
  id: string
  paddle_id: string | null
  state: 'synced' | 'pending' | 'failed'
  pending_since: number | null
  attempts: number
  last_error: string | null
  failed_at: number | null
}

/**
 * A billing row not confirmed by Paddle (pending) or permanently refused by it (failed).
 * Times are µs since the Unix epoch.
 */
export interface PendingRow {
  entity: EntityName
  id: string
  paddle_id: string | null
  state: 'pending' | 'failed'
  /** When our write started waiting for Paddle. */
  pending_since: number | null
  /** Paddle calls tried for the pending write. */
  attempts: number
  /** The last failure, readable (with Paddle's code and request_id). */
  last_error: string | null
  /** When a 4xx made the write fail for good (not retried). */
  failed_at: number | null
  /** The retry worker leaves the row alone until then (backoff). */
  next_attempt_at: number | null
}

export class Crud {
  constructor(private readonly ctx: BillingContext) {}

  /** What an entity's insertNew hook may use (entity-spec.ts). */
  private writeCtx(): WriteCtx {
    return {
      db: this.ctx.db,
      nowMs: () => this.ctx.clock.now(),
      insert: (spec, id, cols, now) => this.insert(spec, id, cols, now),
    }
  }

  private present(spec: EntitySpec, row: Row): PublicRow {
    const out: Record<string, unknown> = { ...row }
    for (const c of [...spec.json, 'raw']) if (c in out) out[c] = parseJson(out[c])
    for (const c of spec.bool) if (c in out) out[c] = Boolean(out[c])
    out.state = row.failed_at != null ? 'failed' : row.pending_since != null ? 'pending' : 'synced'
    if (spec.present) Object.assign(out, spec.present(this.ctx.db, row))
    return out as PublicRow
  }

  /** One row as the API shows it (JSON columns parsed, `state`: synced | pending | failed). */
  get(entity: string, id: string): PublicRow {
    const spec = entitySpec(entity)
    const row = load(this.ctx, spec, id)
    if (!row)
      throw claError('CLA_ERR_NOT_FOUND', `${entity} ${id} does not exist`, {
        details: { entity, id },
      })
    return this.present(spec, row)
  }

  /** Rows of one entity, newest first; `after` is an id for paging, `customer_id` filters when the table has it. */
  list(
    entity: string,
    opts: {
      limit?: number
      after?: string
      customer_id?: string
      state?: 'pending' | 'failed' | 'synced'
    } = {},
  ): PublicRow[] {
    const spec = entitySpec(entity)
    const where: string[] = []
    const args: unknown[] = []
    if (opts.after) {
      where.push('id < ?')
      args.push(opts.after)
    }
    if (opts.customer_id && spec.customerColumn) {
      where.push(`${spec.customerColumn} = ?`)
      args.push(opts.customer_id)
    }
    if (opts.state === 'failed') where.push('failed_at IS NOT NULL')
    if (opts.state === 'pending') where.push('pending_since IS NOT NULL AND failed_at IS NULL')
    if (opts.state === 'synced') where.push('pending_since IS NULL AND failed_at IS NULL')
    const limit = Math.min(Math.max(1, opts.limit ?? 100), 1000)
    const rows = this.ctx.db
      .prepare(
        `SELECT * FROM ${spec.table} ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY id DESC LIMIT ${limit}`,
      )
      .all(...args) as Row[]
    return rows.map((r) => this.present(spec, r))
  }

  /** Every row not yet in sync with Paddle: pending (will be retried) and failed (will not). */
  pending(): PendingRow[] {
    const out: PendingRow[] = []
    for (const name of ENTITY_NAMES) {
      const rows = this.ctx.db
        .prepare(
          `SELECT id, paddle_id, pending_since, attempts, last_error, failed_at, next_attempt_at FROM ${ENTITIES[name].table}
           WHERE pending_since IS NOT NULL OR failed_at IS NOT NULL ORDER BY pending_since`,
        )
        .all() as Array<Omit<PendingRow, 'entity' | 'state'>>
      for (const r of rows)
        out.push({ entity: name, ...r, state: r.failed_at != null ? 'failed' : 'pending' })
    }
    return out
  }

  private validate(
    spec: EntitySpec,
    schema: EntitySpec['create'],
    input: unknown,
    what: string,
  ): Record<string, unknown> {
    if (!Value.Check(schema, input)) {
      const errors = schemaErrors(schema, input)
      const first = errors[0]
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `${spec.name} ${what}: ${first ? `${first.path} ${first.message}` : 'invalid'}`,
        {
          details: { entity: spec.name, errors },
        },
      )
    }
    return structuredClone(input) as Record<string, unknown>
  }

  private toColumns(spec: EntitySpec, input: Record<string, unknown>): Record<string, unknown> {
    const cols: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(input)) {
      if (spec.json.includes(k)) cols[k] = v === null ? null : JSON.stringify(v)
      else if (spec.bool.includes(k)) cols[k] = v ? 1 : 0
      else cols[k] = v
    }
    return cols
  }

  private sqlError(err: unknown): never {
    const msg = (err as Error)?.message ?? ''
    if (isClavitorError(err)) throw err
    if (msg.includes('CLA_HIERARCHY') || msg.includes('CHECK constraint failed: level')) {
      throw claError('CLA_ERR_BILLING_HIERARCHY', msg.replace(/^.*CLA_HIERARCHY: /, ''), {
        cause: err,
      })
    }
    if (msg.includes('UNIQUE constraint failed: discounts.msp_id')) {
      throw claError('CLA_ERR_BILLING_CONFLICT', 'this MSP has a discount already; one per MSP', {
        cause: err,
      })
    }
    throw err
  }

  /**
   * Validates `input` and writes our new row(s), pending, in one transaction; says which
   * row to push (an entity's insertNew may write more than one). Bad input throws a typed
   * error and writes nothing.
   */
  writeNew(
    entity: string,
    input: unknown,
  ): { entity: EntityName; id: string; push: { entity: EntityName; id: string } } {
    const spec = entitySpec(entity)
    const cols = this.toColumns(spec, this.validate(spec, spec.create, input, 'create'))
    const now = nowMicros(this.ctx)
    const id = newId(spec.prefix, this.ctx.clock.now())
    let pushed: { entity: EntityName; id: string } = { entity: spec.name, id }
    try {
      this.ctx.db
        .transaction(() => {
          spec.prepare?.(this.ctx.db, cols, undefined)
          if (spec.insertNew) pushed = spec.insertNew(this.writeCtx(), id, cols, now)
          else this.insert(spec, id, cols, now)
        })
        .immediate()
    } catch (err) {
      this.sqlError(err)
    }
    return { entity: spec.name, id, push: pushed }
  }

  private insert(spec: EntitySpec, id: string, cols: Record<string, unknown>, now: number): void {
    const all: Record<string, unknown> = {
      ...cols,
      id,
      created_at: now,
      updated_at: now,
      pending_since: now,
      attempts: 0,
    }
    const keys = Object.keys(all)
    this.ctx.db
      .prepare(
        `INSERT INTO ${spec.table} (${keys.join(', ')}) VALUES (${keys.map((k) => '@' + k).join(', ')})`,
      )
      .run(all)
  }

  /** Validates a partial change and writes it (pending again); returns the entity to push. */
  writeChange(entity: string, id: string, patch: unknown): EntityName {
    const spec = entitySpec(entity)
    if (spec.immutable) {
      throw claError(
        'CLA_ERR_INVALID_INPUT',
        `${spec.name} cannot be changed once made (Paddle has no PATCH for them)`,
        {
          details: { entity: spec.name },
        },
      )
    }
    const cols = this.toColumns(spec, this.validate(spec, spec.update, patch, 'update'))
    try {
      this.ctx.db
        .transaction(() => {
          const existing = load(this.ctx, spec, id)
          if (!existing)
            throw claError('CLA_ERR_NOT_FOUND', `${entity} ${id} does not exist`, {
              details: { entity, id },
            })
          spec.prepare?.(this.ctx.db, cols, existing)
          const now = Math.max(nowMicros(this.ctx), Number(existing.updated_at) + 1)
          const keys = Object.keys(cols)
          this.ctx.db
            .prepare(
              `UPDATE ${spec.table} SET ${keys.map((k) => `${k} = @${k}`).join(', ')}${keys.length ? ',' : ''}
               updated_at = @__now, pending_since = COALESCE(pending_since, @__now), failed_at = NULL, next_attempt_at = NULL
               WHERE id = @__id`,
            )
            .run({ ...cols, __now: now, __id: id })
        })
        .immediate()
    } catch (err) {
      this.sqlError(err)
    }
    return spec.name
  }
}
