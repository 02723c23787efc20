// Shared pieces of the CLI: the --data option (also CLAVITOR_DATA), output helpers and
// the one place that turns errors into "one line on stderr + exit code".
import { readFileSync, statSync } from 'node:fs'
import { Option, type Command } from 'commander'
import { ClavitorError, claError } from '../../lib/errors.js'
import type { Core, CoreOptions } from '../../lib/core.js'

export const dataOption = () =>
  new Option('--data <dir>', 'data folder ({data}/store, {data}/meta.db, {data}/keys)')
    .env('CLAVITOR_DATA')
    .makeOptionMandatory()

/** `--json` (also CLAVITOR_JSON) of the commands that print a result. */
export const jsonOption = (help = 'print JSON') => new Option('--json', help).env('CLAVITOR_JSON')

/**
 * lib/core.js's openCore, imported on first use: the whole engine loads only for the
 * commands that open a core (see areas.ts).
 */
export async function openCore(opts: CoreOptions): Promise<Core> {
  return (await import('../../lib/core.js')).openCore(opts)
}

/** Opens the core at `opts` (a data folder or the full options), runs `fn`, always closes. */
export async function withCore<T>(
  opts: string | CoreOptions,
  fn: (core: Core) => T | Promise<T>,
): Promise<T> {
  const core = await openCore(typeof opts === 'string' ? { dataDir: opts } : opts)
  try {
    return await fn(core)
  } finally {
    await core.close()
  }
}

/** `--listen HOST:PORT` (or `[IPv6]:PORT`). */
export function parseListen(v: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s]+)):(\d{1,5})$/.exec(v)
  const port = m ? Number(m[3]) : NaN
  if (!m || port > 65535)
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `--listen must be HOST:PORT (e.g. 127.0.0.1:8080, or [IPv6]:PORT); got ${v}`,
    )
  return { host: (m[1] ?? m[2])!, port }
}

/**
 * A repeat within this long of the first signal is the same request, not a second one: a
 * terminal's Ctrl-C reaches the whole process group, and a parent that forwards signals
 * (npm exec, npx) delivers it to us a second time.
 */
export const SECOND_SIGNAL_AFTER_MS = 1000

/**
 * SIGTERM and SIGINT run `stop`, then exit 0; a failure goes to `onError` (a log line;
 * default: failWith's line on stderr) and exit 1. A second signal while stopping, from
 * SECOND_SIGNAL_AFTER_MS on, exits at once: exit 1 and `clavitor: CLA_ERR_STOP_FORCED: …` on
 * stderr (written synchronously: a log line could be lost to the exit). An operator's second
 * Ctrl-C, or a supervisor's second SIGTERM, must not wait on a slow client (a stop can take
 * up to the servers' time limits, http/timeouts.ts). Skipping the rest of the stop is safe:
 * every write is crash-safe, and the next start recovers as after a crash.
 * For the serving commands.
 */
export function onShutdown(
  stop: (signal: string) => Promise<void>,
  onError: (err: unknown) => void = failWith,
): void {
  const handle = shutdownHandler({
    stop,
    onError,
    now: Date.now,
    exit: (code) => process.exit(code),
    write: (line) => process.stderr.write(line),
  })
  // `on`, not `once`: the listener must still be there while the signal is handled.
  // execa's child cleanup (signal-exit) re-raises a signal that no other listener holds,
  // and a `once` listener is gone by then: the process died by SIGTERM mid-stop (under the
  // test runner, whose own listener hid it).
  process.on('SIGTERM', () => handle('SIGTERM'))
  process.on('SIGINT', () => handle('SIGINT'))
}

/** What {@link shutdownHandler} acts through (the process, in {@link onShutdown}). */
export interface ShutdownDeps {
  stop: (signal: string) => Promise<void>
  onError: (err: unknown) => void
  now: () => number
  exit: (code: number) => void
  /** Writes a line to stderr, synchronously. */
  write: (line: string) => void
}

/** onShutdown's decisions for each signal, apart from the process (see onShutdown). */
export function shutdownHandler(d: ShutdownDeps): (signal: string) => void {
  let stoppingSince: number | null = null
  return (signal) => {
    if (stoppingSince !== null) {
      if (d.now() - stoppingSince < SECOND_SIGNAL_AFTER_MS) return
      const e = claError(
        'CLA_ERR_STOP_FORCED',
        `${signal} while stopping: exiting now, the stop unfinished (the next start recovers)`,
      )
      d.write(`clavitor: ${e.code}: ${e.message}\n`)
      d.exit(1)
      return
    }
    stoppingSince = d.now()
    d.stop(signal).then(
      () => d.exit(0),
      (err: unknown) => {
        d.onError(err)
        d.exit(1)
      },
    )
  }
}

/** Prints one JSON document on stdout. */
export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n')
}

/**
 * Wraps a command action: a ClavitorError prints `clavitor: CODE: message` on stderr and
 * exits with its exit code (2 = bad input, 1 = failure); anything else exits 1.
 */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<void> | void) {
  return async (...args: A): Promise<void> => {
    try {
      await fn(...args)
    } catch (err) {
      failWith(err)
    }
  }
}

export function failWith(err: unknown): never {
  if (err instanceof ClavitorError) {
    process.stderr.write(`clavitor: ${err.code}: ${err.message}\n`)
    process.exit(err.exit)
  }
  const e = err as Error
  process.stderr.write(`clavitor: ${e?.stack ?? String(err)}\n`)
  process.exit(1)
}

/** A module of subcommands registers itself on the root program. */
export type Register = (program: Command) => void

/** The named subcommand of `parent` (e.g. `core`), created if no other module made it yet. */
export function subcommand(parent: Command, name: string, description: string): Command {
  return (
    parent.commands.find((c) => c.name() === name) ?? parent.command(name).description(description)
  )
}

/** `--metrics-token-file` of the commands that serve /metrics (core serve, pop run). */
export const metricsTokenOption = () =>
  new Option(
    '--metrics-token-file <file>',
    'serve /metrics behind the bearer token in this file (mode 0600, at least 16 characters); default: /metrics is not served',
  ).env('CLAVITOR_METRICS_TOKEN_FILE')

/** Reads the metrics token; undefined without a file. Refuses a file others can read. */
export function readMetricsToken(file: string | undefined): { token: string } | undefined {
  if (file === undefined || file === '') return undefined
  let token: string
  try {
    if ((statSync(file).mode & 0o077) !== 0)
      throw claError('CLA_ERR_INVALID_OPTION', `${file} holds the metrics token: chmod 600 it`)
    token = readFileSync(file, 'utf8').trim()
  } catch (err) {
    if (err instanceof ClavitorError) throw err
    throw claError('CLA_ERR_INVALID_OPTION', `cannot read --metrics-token-file ${file}`, {
      cause: err,
    })
  }
  if (token.length < 16)
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `${file}: the metrics token must be at least 16 characters`,
    )
  return { token }
}
