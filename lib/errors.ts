// One module of coded errors, after Fastify's lib/errors.js: every error the library
// throws on purpose is a ClavitorError with a stable `CLA_ERR_…` code and the HTTP status
// an app should answer with. docs/errors.md lists the same table; test/lib/errors.test.ts
// fails when the two drift.
//
// Add codes only inside your area's section, keep the sections sorted by code.

export interface ErrorSpec {
  /** HTTP status an app maps this error to. */
  status: number
  /** Exit code for the CLI: 2 = bad input (fix the command), 1 = failure. */
  exit: 1 | 2
  /** One-line description used in docs/errors.md. */
  description: string
}

export const ERRORS = {
  // --- general -----------------------------------------------------------------
  CLA_ERR_INVALID_OPTION: { status: 400, exit: 2, description: 'An option or config value is missing or malformed.' },
  CLA_ERR_INVALID_INPUT: { status: 400, exit: 2, description: 'A request body or argument failed validation.' },
  CLA_ERR_NOT_FOUND: { status: 404, exit: 1, description: 'The requested object does not exist.' },
  CLA_ERR_INTERNAL: { status: 500, exit: 1, description: 'An unexpected internal failure.' },

  // --- store (lib/store) -------------------------------------------------------
  CLA_ERR_INVALID_P0: { status: 400, exit: 2, description: 'P0 is not lowercase hex of even length, 32 to 128 characters.' },
  CLA_ERR_PAYLOAD_TOO_LARGE: { status: 413, exit: 2, description: 'The payload exceeds the configured size limit.' },
  CLA_ERR_BAD_FORMAT: { status: 422, exit: 1, description: 'A .cla file is malformed (magic, version, header or length).' },
  CLA_ERR_BAD_HASH: { status: 422, exit: 1, description: 'A .cla payload does not match its sha256.' },
  CLA_ERR_BAD_SIGNATURE: { status: 422, exit: 1, description: 'A .cla signature does not verify against the named key.' },
  CLA_ERR_UNKNOWN_KEY: { status: 422, exit: 1, description: 'A .cla file names a signing key id that is not trusted here.' },
  CLA_ERR_EXISTS: { status: 409, exit: 1, description: 'The target name exists already; nothing is ever overwritten.' },
  CLA_ERR_SEAL_UNSUPPORTED: { status: 500, exit: 1, description: 'Protection mode is enforce but the filesystem cannot set chattr attributes.' },
  CLA_ERR_SEAL_FAILED: { status: 500, exit: 1, description: 'chattr failed on a file or folder that must be sealed.' },
  CLA_ERR_STORE_NOT_INITIALIZED: { status: 500, exit: 2, description: 'The data folder has no store; run `clavitor store init` first.' },
  CLA_ERR_STORE_CLOSED: { status: 500, exit: 1, description: 'The store was closed.' },

  // --- billing (lib/billing) ---------------------------------------------------

  // --- sync (lib/sync) ---------------------------------------------------------

  // --- auth (lib/auth) ---------------------------------------------------------

  // --- audit (lib/audit) -------------------------------------------------------

  // --- admin / credentials -----------------------------------------------------
} as const satisfies Record<string, ErrorSpec>

export type ErrorCode = keyof typeof ERRORS

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

  toJSON(): Record<string, unknown> {
    return { code: this.code, message: this.message, ...(this.details ? { details: this.details } : {}) }
  }
}

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

/**
 * The HTTP answer for any error, used by both apps' error handlers: a ClavitorError keeps
 * its status and code; Fastify's own 4xx (validation, body too large) keep theirs under a
 * FST_ code; anything else is a 500 that says nothing about internals.
 */
export function errorResponse(err: unknown): {
  status: number
  body: { error: { code: string; message: string; details?: Record<string, unknown> } }
} {
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
