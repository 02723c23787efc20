// Opens the metadata database (better-sqlite3) with the pragmas chosen on purpose and
// brings its schema up to date. One file per data folder: {data}/meta.db.
import { readFileSync } from 'node:fs'
import Database from 'better-sqlite3'
import { micros, systemClock } from '../clock.js'
import { claError } from '../errors.js'
import { makePrivateFile } from './data-dir.js'

export type Db = Database.Database

/**
 * Migration 1 is schema.sql; later versions append here, never edit a shipped one. A
 * migration with `rebuild` remakes a table (SQLite's 12-step procedure, for a change ALTER
 * TABLE cannot make, such as a CHECK): it runs with foreign keys off (they cannot be
 * switched inside a transaction), and `PRAGMA foreign_key_check` must find nothing before
 * it commits.
 */
const MIGRATIONS: ReadonlyArray<{ version: number; sql: () => string; rebuild?: true }> = [
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
  // unplaced customers (docs/billing.md "Customers made at Paddle: unplaced"): level 0, no
  // parent, no children, not an MSP, until someone files it (under an MSP: level 2; under a
  // customer: 3; at the top: an MSP). The CHECKs change, so the table is rebuilt (SQLite's
  // 12-step procedure: new table, copy, drop, rename, index and triggers again).
  {
    version: 7,
    rebuild: true,
    sql: () => `
      CREATE TABLE customers_v7 (
        id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
        parent_id TEXT REFERENCES customers (id),
        level INTEGER NOT NULL CHECK (level IN (0, 1, 2, 3)),
        name TEXT, email TEXT NOT NULL, locale TEXT NOT NULL DEFAULT 'en',
        marketing_consent INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL DEFAULT 'active',
        custom_data TEXT, raw TEXT,
        created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
        pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
        next_attempt_at INTEGER, paddle_occurred_at TEXT,
        bill_to_parent INTEGER NOT NULL DEFAULT 0
          CHECK (bill_to_parent IN (0, 1) AND (bill_to_parent = 0 OR level = 3)),
        CHECK ((level IN (0, 1)) = (parent_id IS NULL)),
        CHECK (parent_id IS NULL OR parent_id <> id)
      ) STRICT;
      INSERT INTO customers_v7 (${CUSTOMER_COLUMNS}) SELECT ${CUSTOMER_COLUMNS} FROM customers;
      DROP TABLE customers;
      ALTER TABLE customers_v7 RENAME TO customers;
      CREATE INDEX customers_parent ON customers (parent_id);
      -- A child's level is its parent's plus one; a department (3) has no children, nor
      -- does an unplaced customer (0). With "parent exists before child" and "level is
      -- fixed once placed" this also rules out cycles.
      CREATE TRIGGER customers_level_insert BEFORE INSERT ON customers
      WHEN NEW.parent_id IS NOT NULL
      BEGIN
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: parent does not exist')
          WHERE NOT EXISTS (SELECT 1 FROM customers WHERE id = NEW.parent_id);
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: an unplaced customer has no children; file it first')
          WHERE (SELECT level FROM customers WHERE id = NEW.parent_id) = 0;
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: level must be parent level + 1')
          WHERE NEW.level <> (SELECT level FROM customers WHERE id = NEW.parent_id) + 1;
      END;
      -- A placed customer keeps its level; it may move to another parent of the same level.
      -- An unplaced one (0) is filed once: at the top (1) or under a parent (its level + 1).
      CREATE TRIGGER customers_level_update BEFORE UPDATE OF parent_id, level ON customers
      WHEN NEW.parent_id IS NOT OLD.parent_id OR NEW.level <> OLD.level
      BEGIN
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: level cannot change')
          WHERE NEW.level <> OLD.level AND OLD.level <> 0;
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: parent does not exist')
          WHERE NEW.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM customers WHERE id = NEW.parent_id);
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: an unplaced customer has no children; file it first')
          WHERE NEW.parent_id IS NOT NULL AND (SELECT level FROM customers WHERE id = NEW.parent_id) = 0;
        SELECT RAISE(ABORT, 'CLA_HIERARCHY: level must be parent level + 1')
          WHERE NEW.parent_id IS NOT NULL AND NEW.level <> (SELECT level FROM customers WHERE id = NEW.parent_id) + 1;
      END;`,
  },
  // scoped admins and admin API tokens (lib/admin/scope.ts, lib/admin/api-tokens.ts): an
  // invite carries the customer subtree its admin will be limited to (NULL = the whole
  // installation), as role_assignments.customer_id does; an API token acts as its admin,
  // with that admin's role and scope at each use, and only its sha256 is stored.
  {
    version: 8,
    sql: () => `
      ALTER TABLE setup_tokens ADD COLUMN customer_id TEXT REFERENCES customers (id);
      CREATE TABLE admin_api_tokens (
        id TEXT PRIMARY KEY,                 -- tok_<16 hex>, shown in lists and the audit log
        human_id TEXT NOT NULL REFERENCES humans (id),
        name TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,     -- sha256 hex of the bearer token
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
      ) STRICT;
      CREATE INDEX admin_api_tokens_human ON admin_api_tokens (human_id);`,
  },
  // the replication log (lib/store/chain.ts): each blob's whole-file sha256 and, for a
  // published blob, the chain value after it in feed order. NULL on rows older than this
  // migration until the store fills them at open (lib/store/rechain.ts), which reads the files.
  {
    version: 9,
    sql: () => `
      ALTER TABLE blobs ADD COLUMN file_sha256 TEXT;
      ALTER TABLE blobs ADD COLUMN chain TEXT;
      -- the rows still to fill: near-empty, so the check at every store open costs nothing
      CREATE INDEX blobs_unchained ON blobs (seq)
        WHERE file_sha256 IS NULL OR (published = 1 AND chain IS NULL);`,
  },
  // reconcile through Paddle's event stream (lib/billing/reconcile.ts): the last event of
  // GET /events applied here (one row), moved in the transaction that applies the event;
  // and where each stored event came from (a webhook delivery, or the stream).
  {
    version: 10,
    sql: () => `
      CREATE TABLE paddle_event_cursor (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        event_id TEXT NOT NULL,            -- evt_…: the next pass asks for the events after it
        occurred_at TEXT NOT NULL,         -- that event's occurred_at, for people
        updated_at INTEGER NOT NULL        -- µs epoch
      ) STRICT;
      ALTER TABLE paddle_events ADD COLUMN source TEXT NOT NULL DEFAULT 'webhook'
        CHECK (source IN ('webhook', 'events'));`,
  },
  // the POP registry's version, bumped by triggers on every change to \`pops\` (any process):
  // the POP API keeps the parsed allowlists of every live POP for its per-connection address
  // screen and re-reads them only when this moves (lib/auth/pop-auth.ts), instead of reading
  // and parsing every POP's row per request (17 ms at 10,000 POPs).
  {
    version: 11,
    sql: () => `
      CREATE TABLE pops_version (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        v INTEGER NOT NULL
      ) STRICT;
      INSERT INTO pops_version (id, v) VALUES (1, 0);
      CREATE TRIGGER pops_version_insert AFTER INSERT ON pops
        BEGIN UPDATE pops_version SET v = v + 1 WHERE id = 1; END;
      CREATE TRIGGER pops_version_update AFTER UPDATE ON pops
        BEGIN UPDATE pops_version SET v = v + 1 WHERE id = 1; END;
      CREATE TRIGGER pops_version_delete AFTER DELETE ON pops
        BEGIN UPDATE pops_version SET v = v + 1 WHERE id = 1; END;`,
  },
]

/** The customers table's columns as of migration 6, copied by the rebuild of migration 7. */
const CUSTOMER_COLUMNS = [
  'id',
  'paddle_id',
  'parent_id',
  'level',
  'name',
  'email',
  'locale',
  'marketing_consent',
  'status',
  'custom_data',
  'raw',
  'created_at',
  'updated_at',
  'pending_since',
  'attempts',
  'last_error',
  'failed_at',
  'next_attempt_at',
  'paddle_occurred_at',
  'bill_to_parent',
].join(', ')

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

/** Brings the schema to `target` (default: this build's), one transaction per migration. */
export function migrate(db: Db, target: number = SCHEMA_VERSION): void {
  const current = db.pragma('user_version', { simple: true }) as number
  if (current > SCHEMA_VERSION) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `database schema version ${current} is newer than this build knows (${SCHEMA_VERSION}); upgrade clavitor`,
    )
  }
  for (const m of MIGRATIONS) {
    if (m.version <= current || m.version > target) continue
    const foreignKeys = m.rebuild === true && db.pragma('foreign_keys', { simple: true }) === 1
    if (foreignKeys) db.pragma('foreign_keys = OFF')
    try {
      db.transaction(() => {
        db.exec(m.sql())
        if (m.rebuild) {
          const broken = db.pragma('foreign_key_check') as Array<Record<string, unknown>>
          if (broken.length) {
            throw claError(
              'CLA_ERR_INTERNAL',
              `schema migration ${m.version} would leave ${broken.length} broken foreign key(s); nothing was changed`,
              { details: { version: m.version, broken: broken.slice(0, 10) } },
            )
          }
        }
        db.pragma(`user_version = ${m.version}`)
      }).immediate()
    } finally {
      if (foreignKeys) db.pragma('foreign_keys = ON')
    }
  }
}

/** Microseconds since the Unix epoch, as an integer: the system clock (lib/clock.ts). */
export function nowMicros(): number {
  return micros(systemClock)
}
