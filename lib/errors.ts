// One module of coded errors, after Fastify's lib/errors.js: every error the library
// throws on purpose is a ClavitorError with a stable `CLA_ERR_…` code and the HTTP status
// an app should answer with. docs/errors.md lists the same table; test/lib/errors.test.ts
// fails when the two drift.
//
// Add codes only inside your area's section, keep the sections sorted by code.

/**
 * An error code's HTTP status, CLI exit code and description (docs/errors.md).
 */
export interface ErrorSpec {
  /** HTTP status an app maps this error to. */
  status: number
  /** Exit code for the CLI: 2 = bad input (fix the command), 1 = failure. */
  exit: 1 | 2
  /** One-line description used in docs/errors.md. */
  description: string
}

/**
 * Every error code of the engine with its {@link ErrorSpec}: the stable contract.
 */
export const ERRORS = {
  // --- general -----------------------------------------------------------------
  CLA_ERR_INVALID_OPTION: { status: 400, exit: 2, description: 'An option or config value is missing or malformed.' },
  CLA_ERR_INVALID_INPUT: { status: 400, exit: 2, description: 'A request body or argument failed validation.' },
  CLA_ERR_NOT_FOUND: { status: 404, exit: 1, description: 'The requested object does not exist.' },
  CLA_ERR_INTERNAL: { status: 500, exit: 1, description: 'An unexpected internal failure.' },
  CLA_ERR_STORAGE_FULL: { status: 503, exit: 1, description: 'The data folder\'s disk is full (no space or no inodes): nothing was stored. Free space; retry after the Retry-After delay.' },
  CLA_ERR_STOP_FORCED: { status: 503, exit: 1, description: 'A second SIGTERM or SIGINT reached a serving command while it was stopping: it exited at once, its stop unfinished. Nothing is lost (as after a crash: the next start recovers).' },

  CLA_ERR_REPLICA_EMPTY: { status: 404, exit: 1, description: 'The meta.db replica holds no database to restore (wrong URL, or replication never ran).' },
  CLA_ERR_REPLICA_UNAVAILABLE: { status: 503, exit: 1, description: 'Litestream is missing or failed (no binary, an unreadable replica): the message has its output.' },
  CLA_ERR_RESTORE_NO_KEYS: { status: 400, exit: 2, description: "A restore needs the core's keys (signing key, token secret) from their offline backup: pass --keys-from or put them in {data}/keys first." },

  // --- store (lib/store) -------------------------------------------------------
  CLA_ERR_INVALID_P0: { status: 400, exit: 2, description: 'P0 is not lowercase hex of even length, 32 to 128 characters.' },
  CLA_ERR_P0_RESERVED: { status: 400, exit: 2, description: "This P0 is reserved for the core's own records (the audit anchors, 64 zeros); no device P0 takes it: check how the P0 is derived." },
  CLA_ERR_PAYLOAD_TOO_LARGE: { status: 413, exit: 2, description: 'The payload exceeds the configured size limit.' },
  CLA_ERR_BAD_FORMAT: { status: 422, exit: 1, description: 'A .cla file is malformed (magic, version, header or length).' },
  CLA_ERR_BAD_HASH: { status: 422, exit: 1, description: 'A .cla payload does not match its sha256.' },
  CLA_ERR_BAD_SIGNATURE: { status: 422, exit: 1, description: 'A .cla signature does not verify against the named key.' },
  CLA_ERR_UNKNOWN_KEY: { status: 422, exit: 1, description: 'A .cla file names a signing key id that is not trusted here.' },
  CLA_ERR_EXISTS: { status: 409, exit: 1, description: 'The target name exists already; nothing is ever overwritten.' },
  CLA_ERR_INVALID_CURSOR: { status: 400, exit: 2, description: 'A cursor (store changes, POP feed) is malformed; pass the `next` token of a previous page, or none to start.' },
  CLA_ERR_SEAL_UNSUPPORTED: { status: 500, exit: 1, description: 'Protection mode is enforce but the filesystem cannot set chattr attributes.' },
  CLA_ERR_SEAL_FAILED: { status: 500, exit: 1, description: 'chattr failed on a file or folder that must be sealed.' },
  CLA_ERR_STORE_NOT_INITIALIZED: { status: 500, exit: 2, description: 'The data folder has no store; run `clavitor store init` first.' },
  CLA_ERR_STORE_CLOSED: { status: 500, exit: 1, description: 'The store was closed.' },
  CLA_ERR_STORE_LOCKED: { status: 409, exit: 1, description: 'Another live process holds the store writer lock ({data}/store.lock).' },
  CLA_ERR_STORE_SYNC_FAILED: { status: 500, exit: 1, description: 'syncfs (`sync -f`) of the store filesystem failed (I/O error or disk full at writeback); nothing of the batch was indexed.' },
  CLA_ERR_STORE_NO_SIGNING_KEY: { status: 500, exit: 1, description: 'This store has no signing key (a POP replica); it only ingests files signed by the core.' },
  CLA_ERR_HEADER_MISMATCH: { status: 422, exit: 1, description: 'A .cla header or path differs from what the feed said it would be.' },

  // --- billing (lib/billing) ---------------------------------------------------
  CLA_ERR_BILLING_CONFLICT: { status: 409, exit: 1, description: 'The billing row conflicts with an existing one (e.g. a second discount for one MSP).' },
  CLA_ERR_BILLING_DEPENDENCY_PENDING: { status: 409, exit: 1, description: 'A billing row waits for the row it refers to (its customer, product, …) to reach Paddle first.' },
  CLA_ERR_BILLING_HIERARCHY: { status: 400, exit: 2, description: 'The customer hierarchy rule is broken: level = parent level + 1, at most 3 levels, no cycles.' },
  CLA_ERR_BILLING_UNSETTLED: { status: 409, exit: 1, description: "A billing row's earlier create got no answer (timeout, broken connection) and Paddle may still apply it: not sent again until the settle window has passed, unless Paddle shows the object first." },
  CLA_ERR_PADDLE_NOT_CONFIGURED: { status: 503, exit: 2, description: 'Paddle is not configured: set CLAVITOR_PADDLE_API_URL/API_KEY (or WEBHOOK_SECRET for webhooks).' },
  CLA_ERR_PADDLE_RATE_LIMITED: { status: 429, exit: 1, description: 'Paddle answered 429 (or our 240/min budget is spent); retry after Retry-After seconds.' },
  CLA_ERR_PADDLE_REJECTED: { status: 502, exit: 1, description: 'Paddle refused the request with a 4xx; details carry its code, type and request_id.' },
  CLA_ERR_PADDLE_SIGNATURE: { status: 401, exit: 1, description: 'A webhook has a missing, malformed, stale or non-matching Paddle-Signature.' },
  CLA_ERR_PADDLE_UNAVAILABLE: { status: 503, exit: 1, description: 'Paddle could not be reached, timed out, or answered 5xx; the write stays pending and is retried.' },

  // --- sync (lib/core-sync, lib/pop-sync) ---------------------------------------------------------
  CLA_ERR_SYNC_ABORTED: { status: 503, exit: 1, description: 'A pull was stopped (shutdown signal); it resumes from the cursor on the next run.' },
  CLA_ERR_SYNC_CHAIN: { status: 409, exit: 1, description: "The core's feed does not match its signed checkpoint from this POP's last verified position (an entry skipped, reordered, inserted or altered, or a forked core); nothing of the page is sealed, the run is audited and stops." },
  CLA_ERR_SYNC_CHECKPOINT: { status: 502, exit: 1, description: "The core's checkpoint is malformed, names another store or generation, or is not signed by a key this POP trusts." },
  CLA_ERR_SYNC_CONFLICT: { status: 409, exit: 1, description: 'The core lists a blob whose path or sequence number this POP holds with different content; an operator must re-seed the POP.' },
  CLA_ERR_SYNC_CURSOR_AHEAD: { status: 409, exit: 1, description: "The POP's cursor is ahead of the core's newest blob (core restored from a backup); the POP re-baselines." },
  CLA_ERR_SYNC_DAMAGED: { status: 503, exit: 1, description: "This POP's copy of the blob is missing or damaged; it is queued for repair from the core (try another POP or later)." },
  CLA_ERR_SYNC_DISK_FULL: { status: 507, exit: 1, description: "The POP's disk is full; free space, the next run resumes from the cursor." },
  CLA_ERR_SYNC_FEED: { status: 502, exit: 1, description: "The core's change feed could not be read (network, HTTP status or malformed page)." },
  CLA_ERR_SYNC_NETWORK: { status: 502, exit: 1, description: 'rsync lost or could not open its connection to the core (socket I/O, protocol stream, timeout).' },
  CLA_ERR_SYNC_PARTIAL: { status: 502, exit: 1, description: 'rsync transferred only part of the list (a listed file is missing or unreadable on the core).' },
  CLA_ERR_SYNC_RATE_LIMITED: { status: 429, exit: 1, description: 'Too many WL3 lookups from this address on this POP; retry after the Retry-After delay.' },
  CLA_ERR_SYNC_RSYNC: { status: 502, exit: 1, description: 'rsync failed (see details.rsync_exit and details.reason).' },
  CLA_ERR_SYNC_BUSY: { status: 503, exit: 1, description: 'The core holds its maximum of feed long-polls (one per POP), or is shutting down (details.reason closing); ask again later, the hourly pull goes on.' },
  CLA_ERR_SYNC_RSYNC_BUSY: { status: 503, exit: 1, description: "The core's rsync daemon is at its connection limit (max connections): other clients hold its slots; the pull is retried on the next run." },
  CLA_ERR_SYNC_RSYNC_AUTH: { status: 502, exit: 1, description: "The core's rsync daemon refused this POP (details.reason auth_failed: wrong or missing {data}/pop-auth/rsync.password or rsync user; access_denied or unknown_module: address not in the POP allowlist, or a wrong module name)." },
  CLA_ERR_SYNC_STORE_MISMATCH: { status: 409, exit: 1, description: "The core's store identity differs from the one this POP replicated; the POP re-baselines." },
  CLA_ERR_SYNC_UNKNOWN_POP: { status: 403, exit: 1, description: 'The POP id is not registered (or removed) on the core.' },
  CLA_ERR_SYNC_VERIFY: { status: 422, exit: 1, description: 'A fetched file failed verification against the feed (size, sha256, signature or header); it was not sealed and the cursor stays.' },

  // --- auth (lib/auth) ---------------------------------------------------------
  CLA_ERR_AUTH_CA: { status: 500, exit: 1, description: 'The private CA is missing, already initialised, or openssl failed (see the message).' },
  CLA_ERR_AUTH_CERT: { status: 401, exit: 1, description: 'No client certificate, one not issued by our CA, revoked, or not bound to a registered POP.' },
  CLA_ERR_AUTH_IP_NOT_ALLOWED: { status: 403, exit: 1, description: "The client address is not in the POP's allowlist." },
  CLA_ERR_AUTH_RATE_LIMITED: { status: 429, exit: 1, description: 'Too many requests from this POP; retry after the Retry-After delay.' },
  CLA_ERR_AUTH_REPLAY: { status: 401, exit: 1, description: 'The request is outside the time window or its nonce was already used.' },
  CLA_ERR_AUTH_SIGNATURE: { status: 401, exit: 1, description: 'The HTTP message signature or content-digest is missing, malformed or does not verify.' },
  CLA_ERR_AUTH_TOKEN: { status: 401, exit: 1, description: 'The access or refresh token is missing, invalid, expired, reused or bound to another certificate.' },
  CLA_ERR_POP_EXISTS: { status: 409, exit: 2, description: 'A POP with this id is already registered.' },

  // --- audit (lib/audit) -------------------------------------------------------
  CLA_ERR_AUDIT_CHAIN_BROKEN: { status: 500, exit: 1, description: 'The audit chain does not verify: a row was edited, deleted or reordered (see the named row).' },
  CLA_ERR_AUDIT_WRITE_FAILED: { status: 503, exit: 1, description: 'The audit log could not be written; the action was refused (fail closed).' },

  // --- admin / credentials -----------------------------------------------------
  CLA_ERR_ADMIN_FORBIDDEN: { status: 403, exit: 2, description: "The admin's role does not allow this action (a viewer changes nothing)." },
  CLA_ERR_ADMIN_RATE_LIMITED: { status: 429, exit: 1, description: 'Too many admin API requests for this token (or address); retry after the Retry-After seconds.' },
  CLA_ERR_ADMIN_SCOPE: { status: 403, exit: 2, description: "The object is outside the admin's scope (the customer subtree they were invited to), or the action is for installation-wide admins only." },
  CLA_ERR_ADMIN_SETUP_TOKEN: { status: 403, exit: 2, description: 'The admin setup or invite token is unknown, expired or already used.' },
  CLA_ERR_ADMIN_UNAUTHENTICATED: { status: 401, exit: 2, description: 'No valid admin session; log in with a security key.' },
  CLA_ERR_API_KEY_INVALID: { status: 401, exit: 2, description: 'The vault API key is malformed, unknown or its secret does not match.' },
  CLA_ERR_API_KEY_MISSING: { status: 401, exit: 2, description: 'No vault API key: send `Authorization: Bearer clv_<id>_<secret>`.' },
  CLA_ERR_API_KEY_REVOKED: { status: 401, exit: 2, description: 'The vault API key was revoked; create a new one for the vault.' },
  CLA_ERR_CREDENTIAL_FORBIDDEN: { status: 403, exit: 2, description: "The API key's customer is not the customer asked for; a key sees only its own customer." },
  CLA_ERR_CREDENTIAL_P0_TAKEN: { status: 409, exit: 2, description: 'This P0 is registered by another customer; it cannot be registered here.' },
  CLA_ERR_CREDENTIAL_RATE_LIMITED: { status: 429, exit: 1, description: 'Too many credentials API requests for this key; retry after the Retry-After delay.' },
  CLA_ERR_IDEMPOTENCY_CONFLICT: { status: 409, exit: 2, description: 'This idempotency key was used by this vault for another registration (another P0 or WL3); use a new key for a new registration.' },
  CLA_ERR_METRICS_UNAUTHORIZED: { status: 401, exit: 2, description: '/metrics needs `Authorization: Bearer <token>` with the configured metrics token.' },
  CLA_ERR_PLAN_DEVICE_LIMIT: { status: 402, exit: 1, description: "The vault has enrolled as many devices as its subscription's plan allows; a new version of an enrolled device's WL3 is still accepted. Upgrade the plan or its quantity." },
  CLA_ERR_PLAN_VAULT_LIMIT: { status: 402, exit: 1, description: "The subscription pays for as many vaults as its plan and quantity allow; link the vault to another subscription or raise the plan or quantity." },
  CLA_ERR_SUBSCRIPTION_INACTIVE: { status: 402, exit: 2, description: "The vault's subscription is missing or not active/trialing; it cannot register credentials." },
  CLA_ERR_UNSUPPORTED_MEDIA_TYPE: { status: 415, exit: 2, description: 'The request body has a content type this route does not take (send application/json).' },
  CLA_ERR_WEBAUTHN_FAILED: { status: 401, exit: 2, description: 'A WebAuthn ceremony failed: unknown or expired challenge, or the response did not verify.' },
} as const satisfies Record<string, ErrorSpec>

/**
 * A stable error code, `CLA_ERR_…`.
 */
export type ErrorCode = keyof typeof ERRORS

/**
 * The one error type the engine throws on purpose: a stable `code`, its HTTP `status`
 * and CLI `exit`, optional `details` and the `cause`.
 */
export class ClavitorError extends Error {
  readonly code: ErrorCode
  readonly status: number
  readonly exit: 1 | 2
  /** Extra machine-readable facts (e.g. a field name, a Paddle request_id). */
  readonly details: Record<string, unknown> | undefined

  constructor(
    code: ErrorCode,
    message: string,
    opts: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause })
    this.name = 'ClavitorError'
    this.code = code
    this.status = ERRORS[code].status
    this.exit = ERRORS[code].exit
    this.details = opts.details
  }

  /**
   * The body an API answers with: code, message, details.
   */
  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) }
  }
}

/**
 * True for a ClavitorError (of `code`, when given): branch on this, never on messages.
 */
export function isClavitorError(err: unknown, code?: ErrorCode): err is ClavitorError {
  return err instanceof ClavitorError && (code === undefined || err.code === code)
}

/** Shorthand: `throw claError('CLA_ERR_INVALID_P0', 'p0 must be …')`. */
export function claError(
  code: ErrorCode,
  message: string,
  opts?: { cause?: unknown; details?: Record<string, unknown> },
): ClavitorError {
  return new ClavitorError(code, message, opts)
}

/** The errno/SQLite codes that mean "the disk is full" (space, inodes or quota). */
const NO_SPACE = new Set(['ENOSPC', 'EDQUOT', 'SQLITE_FULL'])

/** Whether `err`, or any error in its `cause` chain, says the disk is full. */
export function isNoSpace(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 8; e = (e as { cause?: unknown }).cause, depth++) {
    if (isClavitorError(e, 'CLA_ERR_STORAGE_FULL')) return true
    const code = (e as { code?: unknown }).code
    if (typeof code === 'string' && NO_SPACE.has(code)) return true
  }
  return false
}

/** `err` as CLA_ERR_STORAGE_FULL when the disk is full, else unchanged. */
export function storageFullOr(err: unknown, what = 'the write'): unknown {
  if (!isNoSpace(err) || isClavitorError(err, 'CLA_ERR_STORAGE_FULL')) return err
  return claError('CLA_ERR_STORAGE_FULL', `${what} failed: the disk is full; nothing was stored`, {
    cause: err,
  })
}

/**
 * The HTTP answer for any error, used by both apps' error handlers: a ClavitorError keeps
 * its status and code; Fastify's own 4xx (validation, body too large) keep theirs under a
 * FST_ code; anything else is a 500 that says nothing about internals.
 */
export function errorResponse(err: unknown): {
  status: number
  body: { error: { code: string; message: string; details?: Record<string, unknown> } }
} {
  // a full disk under any other error (an internal one wrapping ENOSPC, say) is a clear,
  // retryable 503, not a 500
  if ((!(err instanceof ClavitorError) || err.code === 'CLA_ERR_INTERNAL') && isNoSpace(err))
    err = storageFullOr(err, 'the request')
  if (err instanceof ClavitorError) {
    return {
      status: err.status,
      body: { error: { code: err.code, message: err.message, ...(err.details ? { details: err.details } : {}) } },
    }
  }
  const e = err as { statusCode?: number; code?: string; message?: string; validation?: unknown }
  if (typeof e?.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
    const code = e.validation ? 'CLA_ERR_INVALID_INPUT' : (e.code ?? 'CLA_ERR_INVALID_INPUT')
    return { status: e.statusCode, body: { error: { code, message: e.message ?? 'bad request' } } }
  }
  return { status: 500, body: { error: { code: 'CLA_ERR_INTERNAL', message: 'internal error' } } }
}
