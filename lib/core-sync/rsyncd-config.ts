// Generates the core's rsync daemon config: one read-only module whose path is the store
// root and nothing else. The module is a list of [key, value] pairs so auth can add
// `hosts allow` (from the POP allowlist) and `auth users` / `secrets file` without
// touching the rest (see RsyncdAuth).
import { isAbsolute } from 'node:path'
import { claError } from '../errors.js'
import { RSYNCD_XFER_LOG_FORMAT } from './rsync-audit.js'

export interface RsyncdAuth {
  /** CIDRs or addresses allowed to connect (`hosts allow`); `hosts deny = *` is added. */
  hostsAllow?: readonly string[]
  /** rsync users (`auth users`), each with `:ro`. */
  authUsers?: readonly string[]
  /** The secrets file (mode 600, outside the store). Required with authUsers. */
  secretsFile?: string
  /**
   * Fail closed: with no hosts or no users the module refuses everyone (`hosts deny = *`
   * and no `hosts allow`) instead of serving without auth. `core rsyncd-config` sets it.
   */
  required?: boolean
}

export interface RsyncdConfigOptions {
  /** Absolute store root (the `path` of the module). */
  storeRoot: string
  /** Module name. Default 'clavitor-store'. */
  module?: string
  /** Address the daemon binds. Default: unset (all). */
  address?: string
  /** Port. Default 873. */
  port?: number
  /** pid file. Default unset. */
  pidFile?: string
  /**
   * The module's own lock file for `max connections` (rsyncd's default,
   * /var/run/rsyncd.lock, is shared by every daemon on the host and needs root).
   * Default unset: rsyncd's default.
   */
  lockFile?: string
  /** Log file. Default unset (syslog). */
  logFile?: string
  /** Unprivileged user the module runs as. Default 'nobody'. */
  uid?: string
  gid?: string
  /** chroot into the store root (needs root to start). Default true. */
  useChroot?: boolean
  /** Max concurrent connections. Default 20. */
  maxConnections?: number
  /** Seconds of I/O silence before the daemon drops a client. Default 60. */
  timeout?: number
  auth?: RsyncdAuth
}

export const RSYNCD_REFUSED_OPTIONS = [
  'delete',
  'delete-before',
  'delete-during',
  'delete-after',
  'delete-delay',
  'delete-excluded',
  'remove-source-files',
  'checksum', // a full-content scan on the core: cost without benefit (the POP verifies sha256)
]

const SAFE = /^[^\n\r\[\]]+$/

function check(name: string, v: string | undefined): void {
  if (v !== undefined && !SAFE.test(v)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `${name} must be one line without brackets: ${JSON.stringify(v)}`,
      { details: { field: name } },
    )
  }
}

/** The module's settings, in order; auth adds its own lines. */
export function rsyncdModule(o: RsyncdConfigOptions): Array<[string, string]> {
  if (!isAbsolute(o.storeRoot)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `store root must be an absolute path: ${o.storeRoot}`,
      { details: { field: 'storeRoot' } },
    )
  }
  check('storeRoot', o.storeRoot)
  check('lockFile', o.lockFile)
  const lines: Array<[string, string]> = [
    ['path', o.storeRoot],
    ['comment', 'Clavitor WORM store (read-only replica source for POPs)'],
    ['read only', 'yes'],
    ['write only', 'no'],
    ['list', 'no'],
    ['use chroot', o.useChroot === false ? 'no' : 'yes'],
    ['numeric ids', 'yes'],
    ['munge symlinks', 'yes'],
    ['uid', o.uid ?? 'nobody'],
    ['gid', o.gid ?? 'nogroup'],
    ['max connections', String(o.maxConnections ?? 20)],
    ...(o.lockFile ? ([['lock file', o.lockFile]] as Array<[string, string]>) : []),
    ['timeout', String(o.timeout ?? 60)],
    ['refuse options', RSYNCD_REFUSED_OPTIONS.join(' ')],
    ['exclude', '/.* /tmp/ /*.db /*.db-*'],
    // one line per file sent, in our format: rsync-audit.ts sums them into one audit row
    // per session (the log file is the daemon's; the audit log never gets a row per file)
    ['transfer logging', 'yes'],
    ['log format', RSYNCD_XFER_LOG_FORMAT],
    // `hosts allow` holds addresses and CIDRs only: no DNS lookup per connection
    ['reverse lookup', 'no'],
  ]
  const a = o.auth
  if (a?.required && !(a.hostsAllow?.length && a.authUsers?.length)) {
    // nobody may connect: no POP has both an address and a password yet
    lines.push(['hosts deny', '*'])
    return lines
  }
  if (a?.hostsAllow?.length) {
    for (const h of a.hostsAllow) check('hostsAllow', h)
    lines.push(['hosts allow', a.hostsAllow.join(' ')], ['hosts deny', '*'])
  }
  if (a?.authUsers?.length) {
    if (!a.secretsFile)
      throw claError('CLA_ERR_INVALID_OPTION', 'auth users need a secrets file', {
        details: { field: 'secretsFile' },
      })
    for (const u of a.authUsers) check('authUsers', u)
    check('secretsFile', a.secretsFile)
    lines.push(
      ['auth users', a.authUsers.map((u) => `${u}:ro`).join(', ')],
      ['secrets file', a.secretsFile],
      ['strict modes', 'yes'],
    )
  }
  return lines
}

/** The whole rsyncd.conf text. */
export function renderRsyncdConfig(o: RsyncdConfigOptions): string {
  const name = o.module ?? 'clavitor-store'
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(name)) {
    throw claError('CLA_ERR_INVALID_OPTION', `module name must be [A-Za-z0-9_-]{1,64}: ${name}`, {
      details: { field: 'module' },
    })
  }
  check('address', o.address)
  check('pidFile', o.pidFile)
  check('logFile', o.logFile)
  const out: string[] = [
    '# Generated by `clavitor core rsyncd-config`. Read-only module over the store root only.',
  ]
  if (o.address) out.push(`address = ${o.address}`)
  out.push(`port = ${o.port ?? 873}`)
  // A POP's client sets the same (lib/pop-sync/rsync.ts): without it each protocol round trip can
  // wait out a 40 ms delayed ACK; a 100-file pull over loopback took 140–180 ms, with it 10–30.
  out.push('socket options = TCP_NODELAY')
  if (o.pidFile) out.push(`pid file = ${o.pidFile}`)
  if (o.logFile) out.push(`log file = ${o.logFile}`)
  out.push('', `[${name}]`)
  for (const [k, v] of rsyncdModule(o)) out.push(`    ${k} = ${v}`)
  return out.join('\n') + '\n'
}
