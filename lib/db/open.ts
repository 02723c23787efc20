// Opens the metadata database (better-sqlite3) with the pragmas chosen on purpose and
// brings its schema up to date. One file per data folder: {data}/meta.db.
import { readFileSync } from 'node:fs'
import Database from 'better-sqlite3'
import { micros, systemClock } from '../clock.js'
import { claError } from '../errors.js'
import { makePrivateFile } from './data-dir.js'

export type Db = Database.Database

/** Migration 1 is schema.sql; later versions append here, never edit a shipped one. */
const MIGRATIONS: ReadonlyArray<{ version: number; sql: () => string }> = [
  { version: 1, sql: () => readFileSync(new URL('./schema.sql', import.meta.url), 'utf8') },
  // admin idle timeout: when a session was last used (NULL = not since it was made)
  { version: 2, sql: () => 'ALTER TABLE admin_sessions ADD COLUMN last_seen_at INTEGER;' },
  // registration atomicity (lib/store/store.ts put's inTransaction, lib/credentials/registry.ts):
  // a blob no put acknowledged (its caller's rows failed, or a crash before its row) is kept,
  // WORM, with published = 0: never in the feed nor a P0's latest. A client's idempotency key
  // makes a retried registration answer the first one instead of adding a version.
  {
    version: 3,
    sql: () => `
      ALTER TABLE blobs ADD COLUMN published INTEGER NOT NULL DEFAULT 1;
      ALTER TABLE credentials ADD COLUMN idempotency_key TEXT;
      CREATE UNIQUE INDEX credentials_idempotency ON credentials (vault_id, idempotency_key)
        WHERE idempotency_key IS NOT NULL;`,
  },
  // plans (tiers, lib/billing/plans.ts): ours only, never at Paddle. A price sells at most
  // one plan (price_id is the key), so a subscription item names its plan without doubt.
  {
    version: 4,
    sql: () => `
      CREATE TABLE plans (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        description TEXT,
        max_vaults INTEGER,                -- per unit of quantity; NULL = no limit
        max_devices_per_vault INTEGER,     -- NULL = no limit
        status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL
      ) STRICT;
      CREATE TABLE plan_prices (
        price_id TEXT PRIMARY KEY,         -- our price id
        plan_id TEXT NOT NULL REFERENCES plans (id)
      ) STRICT;
      CREATE INDEX plan_prices_plan ON plan_prices (plan_id);`,
  },
  // the subscription's life led by us (lib/billing/subscription-lifecycle.ts): the action
  // (cancel, pause, resume, items, discount) decided and written here, not yet confirmed
  // by Paddle; NULL when none waits
  { version: 5, sql: () => 'ALTER TABLE subscriptions ADD COLUMN pending_change TEXT;' },
  // a department billed through its parent's Paddle customer (docs/billing.md "Departments
  // billed through their parent"): Paddle's customer emails are unique, so a department with
  // its parent's email has no Paddle customer of its own. Only a department (level 3) may.
  {
    version: 6,
    sql: () => `
      ALTER TABLE customers ADD COLUMN bill_to_parent INTEGER NOT NULL DEFAULT 0
        CHECK (bill_to_parent IN (0, 1) AND (bill_to_parent = 0 OR level = 3));`,
  },
]

export const SCHEMA_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version

export interface OpenDbOptions {
  /** Open read-only (no migration). Default false. */
  readonly?: boolean
  /** busy_timeout in ms when another process holds the write lock. Default 5000. */
  busyTimeoutMs?: number
}

export function openDb(file: string, opts: OpenDbOptions = {}): Db {
  let db: Db
  try {
    // 0600 before SQLite opens it: its -wal and -shm are then born 0600 too
    if (!opts.readonly && file !== ':memory:') makePrivateFile(file, { sqlite: true })
    db = new Database(file, {
      readonly: opts.readonly ?? false,
      fileMustExist: opts.readonly ?? false,
    })
  } catch (cause) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `cannot open database ${file}: ${(cause as Error).message}`,
      { cause },
    )
  }
  db.pragma(`busy_timeout = ${opts.busyTimeoutMs ?? 5000}`)
  if (!opts.readonly) {
    db.pragma('journal_mode = WAL')
    // FULL: an acknowledged write (an index row, a pending dual-write) survives power loss.
    db.pragma('synchronous = FULL')
  }
  db.pragma('foreign_keys = ON')
  if (!opts.readonly) {
    try {
      migrate(db)
    } catch (err) {
      db.close()
      throw err
    }
  }
  return db
}

export function migrate(db: Db): void {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > SCHEMA_VERSION) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `database schema version ${current} is newer than this build knows (${SCHEMA_VERSION}); upgrade clavitor`,
    )
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current) continue
    db.transaction(() => {
      db.exec(m.sql())
      db.pragma(`user_version = ${m.version}`)
    }).immediate()
  }
}

/** Microseconds since the Unix epoch, as an integer: the system clock (lib/clock.ts). */
export function nowMicros(): number {
  return micros(systemClock)
}
