-- Clavitor metadata schema (SQLite). The whole schema lives here; lib/db/migrate.ts applies
-- it as migration 1 and later numbered migrations from lib/db/migrations.ts.
--
-- 95% Paddle's own shapes, mirrored: money is a decimal string in minor units, Paddle's ids
-- (ctm_…, sub_…) sit beside ours, enum columns are plain TEXT without CHECK lists so an
-- enum value Paddle adds tomorrow is stored, not refused, and `raw` keeps Paddle's last
-- full snapshot. No foreign keys between mirrored entities: webhooks arrive out of order
-- and a child may come before its parent.
--
-- Every mirrored table has the dual-write columns:
--   pending_since   µs epoch when our write is not yet confirmed by Paddle (NULL = in sync)
--   attempts        Paddle calls tried for the pending write
--   last_error      last failure, human-readable (with Paddle's code and request_id)
--   failed_at       set when a 4xx made the write permanently fail (shown, not retried)
--   next_attempt_at µs epoch before which the retry worker leaves the row alone (backoff)
--   paddle_occurred_at  occurred_at of the newest webhook applied to the row (RFC 3339)
--
-- Times: *_at columns that we assign are INTEGER microseconds since the Unix epoch unless
-- noted; Paddle's own timestamps are kept as Paddle's RFC 3339 strings.

-- ---------------------------------------------------------------------------------------
-- key/value facts about this data folder (store identity, generation, POP cursor, …)
CREATE TABLE meta (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) STRICT;

-- ---------------------------------------------------------------------------------------
-- WORM store index (lib/store). Rebuildable from the .cla files alone.
-- On the core, seq and created_at are assigned under the writer lock; on a POP they are
-- copied from each file's header, so the same (created_at, seq) cursor means the same blob
-- everywhere.
CREATE TABLE blobs (
  seq        INTEGER PRIMARY KEY,          -- strictly increasing sequence number
  created_at INTEGER NOT NULL,             -- µs epoch, strictly increasing with seq
  p0         TEXT    NOT NULL,
  path       TEXT    NOT NULL UNIQUE,      -- relative to the store root: {shard}/{p0}/{name}.cla
  size       INTEGER NOT NULL,             -- payload size in bytes
  file_size  INTEGER NOT NULL,             -- whole .cla file size in bytes
  sha256     TEXT    NOT NULL,             -- payload sha256, lowercase hex
  key_id     TEXT    NOT NULL,             -- signing key id from the header
  sealed     INTEGER NOT NULL DEFAULT 0    -- 1 once chattr +i was confirmed
) STRICT;
CREATE INDEX blobs_p0 ON blobs (p0, created_at);
CREATE UNIQUE INDEX blobs_cursor ON blobs (created_at, seq);

-- ---------------------------------------------------------------------------------------
-- Paddle mirrors (lib/billing)
CREATE TABLE products (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  name TEXT NOT NULL, description TEXT, type TEXT, tax_category TEXT NOT NULL DEFAULT 'standard',
  image_url TEXT, status TEXT NOT NULL DEFAULT 'active',
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

CREATE TABLE prices (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  product_id TEXT NOT NULL,                -- our product id
  description TEXT, name TEXT,
  unit_amount TEXT NOT NULL,               -- minor units, decimal string
  currency_code TEXT NOT NULL,
  billing_interval TEXT, billing_frequency INTEGER,   -- NULL interval = one-time
  trial_interval TEXT, trial_frequency INTEGER,
  tax_mode TEXT NOT NULL DEFAULT 'account_setting',
  quantity_min INTEGER NOT NULL DEFAULT 1, quantity_max INTEGER NOT NULL DEFAULT 100,
  status TEXT NOT NULL DEFAULT 'active',
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

CREATE TABLE discounts (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  msp_id TEXT UNIQUE,                      -- ours: the MSP whose margin this is (one per MSP)
  description TEXT NOT NULL,
  type TEXT NOT NULL,                      -- flat | flat_per_seat | percentage | (future)
  amount TEXT NOT NULL,                    -- percentage "0.01".."100" or minor units
  currency_code TEXT,                      -- required for flat types
  code TEXT, enabled_for_checkout INTEGER NOT NULL DEFAULT 0,
  recur INTEGER NOT NULL DEFAULT 1, maximum_recurring_intervals INTEGER,
  usage_limit INTEGER, expires_at TEXT,
  status TEXT NOT NULL DEFAULT 'active',
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

-- customers carry our hierarchy: level 1 MSP → 2 customer → 3 department.
CREATE TABLE customers (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  parent_id TEXT REFERENCES customers (id),
  level INTEGER NOT NULL CHECK (level IN (1, 2, 3)),
  name TEXT, email TEXT NOT NULL, locale TEXT NOT NULL DEFAULT 'en',
  marketing_consent INTEGER NOT NULL DEFAULT 0,
  status TEXT NOT NULL DEFAULT 'active',
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT,
  CHECK ((level = 1) = (parent_id IS NULL)),
  CHECK (parent_id IS NULL OR parent_id <> id)
) STRICT;
CREATE INDEX customers_parent ON customers (parent_id);

-- A child's level is its parent's plus one; a department (3) has no children. Together
-- with "parent exists before child" and "level is fixed" this also rules out cycles.
CREATE TRIGGER customers_level_insert BEFORE INSERT ON customers
WHEN NEW.parent_id IS NOT NULL
BEGIN
  SELECT RAISE(ABORT, 'CLA_HIERARCHY: parent does not exist')
    WHERE NOT EXISTS (SELECT 1 FROM customers WHERE id = NEW.parent_id);
  SELECT RAISE(ABORT, 'CLA_HIERARCHY: level must be parent level + 1')
    WHERE NEW.level <> (SELECT level FROM customers WHERE id = NEW.parent_id) + 1;
END;
-- A customer keeps its level; it may move to another parent of the same level (a customer
-- from one MSP to another), which keeps "level = parent level + 1" and so cannot make a cycle.
CREATE TRIGGER customers_level_update BEFORE UPDATE OF parent_id, level ON customers
WHEN NEW.parent_id IS NOT OLD.parent_id OR NEW.level <> OLD.level
BEGIN
  SELECT RAISE(ABORT, 'CLA_HIERARCHY: level cannot change')
    WHERE NEW.level <> OLD.level;
  SELECT RAISE(ABORT, 'CLA_HIERARCHY: parent does not exist')
    WHERE NEW.parent_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM customers WHERE id = NEW.parent_id);
  SELECT RAISE(ABORT, 'CLA_HIERARCHY: level must be parent level + 1')
    WHERE NEW.parent_id IS NOT NULL AND NEW.level <> (SELECT level FROM customers WHERE id = NEW.parent_id) + 1;
END;

CREATE TABLE addresses (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  customer_id TEXT NOT NULL,               -- our customer id
  description TEXT, first_line TEXT, second_line TEXT, city TEXT, postal_code TEXT, region TEXT,
  country_code TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'active',
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

CREATE TABLE businesses (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  customer_id TEXT NOT NULL,
  name TEXT NOT NULL, company_number TEXT, tax_identifier TEXT,
  contacts TEXT,                           -- JSON array [{name,email}]
  status TEXT NOT NULL DEFAULT 'active',
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

-- A subscription we create first is pushed to Paddle as a manual-collection transaction
-- (origin_transaction_id); it is linked when Paddle's sub_ id appears.
CREATE TABLE subscriptions (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  customer_id TEXT NOT NULL, address_id TEXT, business_id TEXT,
  discount_id TEXT,                        -- our discount id (the MSP margin)
  vault_l0 TEXT,                           -- ours: the vault this subscription pays for
  origin_transaction_id TEXT,              -- our transaction id that created it at Paddle
  status TEXT NOT NULL DEFAULT 'active',   -- active | past_due | paused | trialing | canceled | …
  currency_code TEXT NOT NULL,
  collection_mode TEXT NOT NULL DEFAULT 'manual',
  billing_cycle_interval TEXT, billing_cycle_frequency INTEGER,
  current_period_starts_at TEXT, current_period_ends_at TEXT, next_billed_at TEXT,
  started_at TEXT, first_billed_at TEXT, paused_at TEXT, canceled_at TEXT,
  scheduled_change TEXT,                   -- JSON
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;
CREATE INDEX subscriptions_customer ON subscriptions (customer_id);

CREATE TABLE subscription_items (
  subscription_id TEXT NOT NULL,           -- our subscription id
  price_id TEXT NOT NULL,                  -- our price id (or Paddle's when unknown here)
  quantity INTEGER NOT NULL DEFAULT 1,
  status TEXT NOT NULL DEFAULT 'active',
  recurring INTEGER NOT NULL DEFAULT 1,
  raw TEXT,
  PRIMARY KEY (subscription_id, price_id)
) STRICT;

CREATE TABLE transactions (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  customer_id TEXT, address_id TEXT, business_id TEXT, discount_id TEXT,
  subscription_id TEXT,                    -- our subscription id, once linked
  status TEXT NOT NULL DEFAULT 'draft',
  origin TEXT, collection_mode TEXT NOT NULL DEFAULT 'manual',
  currency_code TEXT NOT NULL,
  items TEXT NOT NULL,                     -- JSON [{price_id, quantity}]
  billing_details TEXT,                    -- JSON
  details TEXT,                            -- JSON: Paddle's totals (strings, minor units)
  total TEXT, tax TEXT, grand_total TEXT,  -- minor units, from Paddle; we compute no tax
  billed_at TEXT,
  custom_data TEXT, raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

CREATE TABLE adjustments (
  id TEXT PRIMARY KEY, paddle_id TEXT UNIQUE,
  transaction_id TEXT NOT NULL, subscription_id TEXT, customer_id TEXT,
  action TEXT NOT NULL, type TEXT, reason TEXT NOT NULL,
  items TEXT,                              -- JSON
  currency_code TEXT, total TEXT,
  status TEXT NOT NULL DEFAULT 'pending_approval',
  raw TEXT,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  pending_since INTEGER, attempts INTEGER NOT NULL DEFAULT 0, last_error TEXT, failed_at INTEGER,
  next_attempt_at INTEGER, paddle_occurred_at TEXT
) STRICT;

-- Dual-write leases (lib/billing): one process at a time pushes a given row to Paddle, so
-- two processes (core serve's worker and `billing retry --once`) never both create it.
CREATE TABLE billing_leases (
  key TEXT PRIMARY KEY,                    -- '<entity>:<our id>'
  holder TEXT NOT NULL,                    -- random id of the Billing instance
  until INTEGER NOT NULL                   -- µs epoch; an expired lease may be taken over
) STRICT;

-- Webhook idempotency: a row per Paddle event_id; a duplicate delivery is a no-op.
CREATE TABLE paddle_events (
  event_id TEXT PRIMARY KEY,
  event_type TEXT NOT NULL,
  occurred_at TEXT NOT NULL,
  notification_id TEXT,
  received_at INTEGER NOT NULL,
  outcome TEXT NOT NULL,                   -- applied | stale | stored (unknown type) | …
  payload TEXT NOT NULL                    -- the raw body as received
) STRICT;

-- ---------------------------------------------------------------------------------------
-- Vaults and credentials (ours)
CREATE TABLE vaults (
  id TEXT PRIMARY KEY,
  customer_id TEXT NOT NULL REFERENCES customers (id),
  subscription_id TEXT REFERENCES subscriptions (id),
  name TEXT NOT NULL,
  created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE vault_api_keys (
  id TEXT PRIMARY KEY,                     -- public key id (prefix of the presented key)
  vault_id TEXT NOT NULL REFERENCES vaults (id),
  hash TEXT NOT NULL,                      -- sha256 of the secret part; the key is shown once
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;

-- P0 → WL3: each registration is a sealed .cla in the store (blob_seq); the latest is current.
CREATE TABLE credentials (
  id INTEGER PRIMARY KEY,
  p0 TEXT NOT NULL,
  vault_id TEXT NOT NULL REFERENCES vaults (id),
  customer_id TEXT NOT NULL REFERENCES customers (id),
  blob_seq INTEGER NOT NULL UNIQUE REFERENCES blobs (seq),
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX credentials_p0 ON credentials (p0, blob_seq);
CREATE INDEX credentials_customer ON credentials (customer_id);

-- ---------------------------------------------------------------------------------------
-- RBAC and admin authentication (ours)
CREATE TABLE roles (
  id TEXT PRIMARY KEY,                     -- owner | operator | viewer
  description TEXT NOT NULL
) STRICT;
INSERT INTO roles (id, description) VALUES
  ('owner', 'Everything, including enrolling admins'),
  ('operator', 'Day-to-day changes: customers, billing, POPs'),
  ('viewer', 'Read only');

CREATE TABLE humans (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  webauthn_user_id TEXT NOT NULL UNIQUE,   -- base64url, opaque to the authenticator
  created_at INTEGER NOT NULL,
  disabled_at INTEGER
) STRICT;

CREATE TABLE role_assignments (
  human_id TEXT NOT NULL REFERENCES humans (id),
  role_id TEXT NOT NULL REFERENCES roles (id),
  customer_id TEXT REFERENCES customers (id),   -- NULL = whole installation
  created_at INTEGER NOT NULL,
  PRIMARY KEY (human_id, role_id)
) STRICT;

CREATE TABLE webauthn_credentials (
  id TEXT PRIMARY KEY,                     -- credential id, base64url
  human_id TEXT NOT NULL REFERENCES humans (id),
  public_key BLOB NOT NULL,
  counter INTEGER NOT NULL DEFAULT 0,
  transports TEXT,                         -- JSON array
  created_at INTEGER NOT NULL,
  last_used_at INTEGER
) STRICT;

CREATE TABLE admin_sessions (
  id_hash TEXT PRIMARY KEY,                -- sha256 of the cookie value
  human_id TEXT NOT NULL REFERENCES humans (id),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE setup_tokens (
  token_hash TEXT PRIMARY KEY,             -- sha256 of the one-time token
  role_id TEXT NOT NULL REFERENCES roles (id),
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  created_by TEXT NOT NULL DEFAULT 'system',   -- human id of the inviting owner, or 'system'
  used_by TEXT                             -- human id enrolled with it
) STRICT;

-- WebAuthn ceremonies in flight (lib/admin): the challenge stays on the server, keyed by a
-- random ceremony id handed to the browser; one use, short expiry.
CREATE TABLE admin_challenges (
  id_hash TEXT PRIMARY KEY,                -- sha256 of the ceremony id
  kind TEXT NOT NULL,                      -- register | login
  challenge TEXT NOT NULL,                 -- base64url, as sent in the options
  data TEXT,                               -- JSON (register: name, role, token hash, user id)
  expires_at INTEGER NOT NULL
) STRICT;

-- ---------------------------------------------------------------------------------------
-- Audit log: hash-chained; each row holds the previous row's hash (lib/audit).
CREATE TABLE events (
  id INTEGER PRIMARY KEY,
  at INTEGER NOT NULL,                     -- µs epoch
  kind TEXT NOT NULL,                      -- pop.request | admin.action | sync.alarm | webhook | …
  actor TEXT NOT NULL,                     -- pop id, human id, 'system', 'unknown'
  outcome TEXT NOT NULL,                   -- allowed | refused | ok | error | alarm
  reason TEXT,                             -- stable reason code
  ip TEXT, route TEXT, fingerprint TEXT,
  data TEXT,                               -- JSON details
  prev_hash TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE
) STRICT;
CREATE INDEX events_kind ON events (kind, id);

-- ---------------------------------------------------------------------------------------
-- POPs (core side) and replication state
CREATE TABLE pops (
  id TEXT PRIMARY KEY,                     -- [a-z0-9-]{1,63}
  name TEXT,
  cert_fingerprint TEXT,                   -- sha256 of the client certificate (DER), hex
  public_key TEXT,                         -- Ed25519 raw 32 bytes, base64
  allowlist TEXT NOT NULL DEFAULT '[]',    -- JSON array of CIDRs
  rsync_user TEXT,
  created_at INTEGER NOT NULL,
  removed_at INTEGER
) STRICT;

CREATE TABLE pop_sync_state (
  pop_id TEXT PRIMARY KEY REFERENCES pops (id),
  cursor TEXT,
  last_success_at INTEGER,
  last_error TEXT,
  last_error_at INTEGER,
  lag_us INTEGER,                          -- core's newest created_at minus the POP's cursor
  blobs INTEGER,                           -- blobs the POP holds
  updated_at INTEGER NOT NULL
) STRICT;

-- history for the dashboard's lag chart
CREATE TABLE pop_lag_samples (
  pop_id TEXT NOT NULL,
  at INTEGER NOT NULL,
  lag_us INTEGER NOT NULL,
  PRIMARY KEY (pop_id, at)
) STRICT;

-- RFC 9421 replay protection: nonces seen inside the time window survive a restart.
CREATE TABLE pop_nonces (
  pop_id TEXT NOT NULL,
  nonce TEXT NOT NULL,
  expires_at INTEGER NOT NULL,
  PRIMARY KEY (pop_id, nonce)
) STRICT;
CREATE INDEX pop_nonces_expiry ON pop_nonces (expires_at);

-- Rotating refresh tokens; reuse of a consumed one revokes the whole chain.
CREATE TABLE pop_refresh_tokens (
  token_hash TEXT PRIMARY KEY,
  pop_id TEXT NOT NULL,
  chain_id TEXT NOT NULL,
  cert_fingerprint TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER,
  revoked_at INTEGER
) STRICT;
CREATE INDEX pop_refresh_chain ON pop_refresh_tokens (chain_id);
