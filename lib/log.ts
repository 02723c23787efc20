// Structured logs (pino). One root logger per process, a child per component
// (`log.child({ component: 'sync' })`). Secrets never reach a log line: the paths below are
// redacted wherever they appear, including Fastify's request serialisation.
import { pino, type Logger, type LoggerOptions } from 'pino'

export type { Logger }

export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers.cookie',
  'req.headers["x-csrf-token"]',
  'req.headers.signature',
  'res.headers["set-cookie"]',
  'headers.authorization',
  'headers.cookie',
  'token',
  'refresh_token',
  'refreshToken',
  'apiKey',
  'api_key',
  'secret',
  'password',
  '*.token',
  '*.refresh_token',
  '*.refreshToken',
  '*.apiKey',
  '*.api_key',
  '*.secret',
  '*.password',
  '*.privateKey',
]

/**
 * Options of {@link createLogger}.
 */
export interface LogOptions {
  /** pino level; default from CLAVITOR_LOG_LEVEL or 'info'. */
  level?: string
  /** Extra base fields (e.g. { role: 'pop', pop: 'eu-1' }). */
  base?: Record<string, unknown>
  /** Where to write; default stdout (fd 1). */
  destination?: pino.DestinationStream
}

/**
 * A pino logger with our redaction paths (secrets never reach a log line).
 */
export function createLogger(opts: LogOptions = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? process.env.CLAVITOR_LOG_LEVEL ?? 'info',
    base: { pid: process.pid, ...opts.base },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  }
  return opts.destination ? pino(options, opts.destination) : pino(options)
}

/** A logger that writes nothing (library default when the embedder gives none). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' })
}
