// Shared pieces of the CLI: the --data option (also CLAVITOR_DATA), output helpers and
// the one place that turns errors into "one line on stderr + exit code".
import { readFileSync, statSync } from 'node:fs'
import { Option, type Command } from 'commander'
import { ClavitorError, claError } from '../../lib/errors.js'

export const dataOption = () =>
  new Option('--data <dir>', 'data folder ({data}/store, {data}/meta.db, {data}/keys)')
    .env('CLAVITOR_DATA')
    .makeOptionMandatory()

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
