// Paddle configuration for the core (validated once, at the edge): from flags or the
// CLAVITOR_PADDLE_* environment. Without an API URL and key the billing layer still
// writes our rows; they stay pending (last_error says why) until Paddle is configured.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import { Billing, type AuditSink, type RetryOptions } from './billing.js'
import type { Clock } from '../clock.js'
import { PaddleClient } from './paddle-client.js'

/**
 * How the core reaches Paddle: API URL and key, webhook secrets, timeouts; from flags or the
 * CLAVITOR_PADDLE_* environment. Without URL and key, billing rows stay pending.
 */
export interface PaddleConfig {
  /** CLAVITOR_PADDLE_API_URL, e.g. https://sandbox-api.paddle.com. Default: unset (no Paddle). */
  apiUrl?: string
  /** CLAVITOR_PADDLE_API_KEY. Default: unset. */
  apiKey?: string
  /** CLAVITOR_PADDLE_WEBHOOK_SECRET, comma-separated for rotation. Default: none (webhooks answer 503). */
  webhookSecrets?: string[]
  /** CLAVITOR_PADDLE_TIMEOUT_MS, per request. Default 10000. */
  timeoutMs?: number
  /** CLAVITOR_PADDLE_WEBHOOK_TOLERANCE_S, |now − ts| accepted. Default 10. */
  webhookToleranceS?: number
  /** CLAVITOR_BILLING_RETRY_AFTER_MS: rows pending longer than this are retried. Default 300000. */
  retry?: RetryOptions
  /** Time source (tests). Default: the system clock. */
  clock?: Clock
}

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined || v === '') return undefined
  if (!/^\d+$/.test(v))
    throw claError('CLA_ERR_INVALID_OPTION', `${name} must be a whole number, got "${v}"`)
  return Number(v)
}

export function splitSecrets(v: string | undefined): string[] {
  return (v ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
}

/**
 * Reads a {@link PaddleConfig} from CLAVITOR_PADDLE_* and CLAVITOR_BILLING_RETRY_AFTER_MS.
 * Throws CLA_ERR_INVALID_OPTION when a numeric variable is not a whole number.
 */
export function paddleConfigFromEnv(env: NodeJS.ProcessEnv = process.env): PaddleConfig {
  const retryAfter = num('CLAVITOR_BILLING_RETRY_AFTER_MS', env.CLAVITOR_BILLING_RETRY_AFTER_MS)
  const timeoutMs = num('CLAVITOR_PADDLE_TIMEOUT_MS', env.CLAVITOR_PADDLE_TIMEOUT_MS)
  const tol = num('CLAVITOR_PADDLE_WEBHOOK_TOLERANCE_S', env.CLAVITOR_PADDLE_WEBHOOK_TOLERANCE_S)
  return {
    ...(env.CLAVITOR_PADDLE_API_URL ? { apiUrl: env.CLAVITOR_PADDLE_API_URL } : {}),
    ...(env.CLAVITOR_PADDLE_API_KEY ? { apiKey: env.CLAVITOR_PADDLE_API_KEY } : {}),
    webhookSecrets: splitSecrets(env.CLAVITOR_PADDLE_WEBHOOK_SECRET),
    ...(timeoutMs !== undefined ? { timeoutMs } : {}),
    ...(tol !== undefined ? { webhookToleranceS: tol } : {}),
    ...(retryAfter !== undefined ? { retry: { minAgeMs: retryAfter } } : {}),
  }
}

/** The Billing instance for a core: a Paddle client when URL and key are both set. */
export function openBilling(db: Db, cfg: PaddleConfig = {}, audit?: AuditSink): Billing {
  if (Boolean(cfg.apiUrl) !== Boolean(cfg.apiKey)) {
    throw claError(
      'CLA_ERR_PADDLE_NOT_CONFIGURED',
      'set both the Paddle API URL and the API key (or neither)',
    )
  }
  const paddle =
    cfg.apiUrl && cfg.apiKey
      ? new PaddleClient({
          baseUrl: cfg.apiUrl,
          apiKey: cfg.apiKey,
          ...(cfg.timeoutMs ? { timeoutMs: cfg.timeoutMs } : {}),
          ...(cfg.clock ? { clock: cfg.clock } : {}),
        })
      : null
  return new Billing({
    db,
    paddle,
    ...(cfg.clock ? { clock: cfg.clock } : {}),
    ...(audit ? { audit } : {}),
    ...(cfg.retry ? { retry: cfg.retry } : {}),
    webhook: {
      secrets: cfg.webhookSecrets ?? [],
      ...(cfg.webhookToleranceS !== undefined ? { toleranceS: cfg.webhookToleranceS } : {}),
    },
  })
}
