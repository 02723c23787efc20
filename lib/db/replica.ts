// meta.db streamed to a replica with Litestream (docs/operations.md "Disaster recovery"):
// customers, the billing mirror, vault keys, admins and the audit chain survive the loss of
// the core's disk up to about a second of writes, instead of back to the last manual
// `clavitor core backup`. Litestream is a separate process (`litestream replicate`, the
// unit clavitor-litestream.service) that follows the WAL; this module writes its config,
// finds its binary, reads how far the replica is behind, and restores from it.
//
// The binary comes with the package as the optional dependency
// @flydotio/litestream-linux-x64 (v0.3.13); CLAVITOR_LITESTREAM or a `litestream` on the
// PATH is used instead when set or when the package is absent (another platform).
import { execFileSync } from 'node:child_process'
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, isAbsolute, join } from 'node:path'
import { execa } from 'execa'
import { claError } from '../errors.js'
import { dataLayout, makePrivateFile } from './data-dir.js'

/** {data}/litestream.yml: where this core's meta.db is replicated. */
export function replicaConfigPath(dataDir: string): string {
  return join(dataDir, 'litestream.yml')
}

/** The Litestream binary: CLAVITOR_LITESTREAM, the packaged one, or `litestream` on the PATH. */
export function litestreamBinary(): string {
  const env = process.env.CLAVITOR_LITESTREAM
  if (env) return env
  try {
    const pkg = createRequire(import.meta.url).resolve(
      '@flydotio/litestream-linux-x64/package.json',
    )
    const bin = join(dirname(pkg), 'litestream')
    if (existsSync(bin)) return bin
  } catch {
    // not installed (another platform): try the PATH
  }
  try {
    execFileSync('litestream', ['version'], { stdio: 'ignore' })
    return 'litestream'
  } catch {
    throw claError(
      'CLA_ERR_REPLICA_UNAVAILABLE',
      'no Litestream binary: install the optional dependency @flydotio/litestream-linux-x64, put litestream on the PATH, or set CLAVITOR_LITESTREAM',
    )
  }
}

/**
 * A replica target as Litestream takes it: an absolute path (a local or mounted folder)
 * becomes file://…; s3://, gs://, abs://, sftp:// and file:// URLs pass as given.
 */
export function replicaUrl(target: string): string {
  if (isAbsolute(target)) return `file://${target}`
  if (/^(s3|gs|abs|sftp|file):\/\/[^\s]+$/.test(target)) return target
  throw claError(
    'CLA_ERR_INVALID_OPTION',
    `replica must be an absolute path or an s3://, gs://, abs://, sftp:// or file:// URL, got "${target}"`,
  )
}

export interface ReplicaOptions {
  /** Where to stream: an absolute path or a URL (replicaUrl). */
  replica: string
  /** How often Litestream ships the WAL. Default 1000 ms: the RPO of meta.db. */
  syncIntervalMs?: number
  /** A full snapshot this often (restores replay WAL from the last one). Default 24 h. */
  snapshotIntervalH?: number
  /** Snapshots and WAL kept this long. Default 72 h. */
  retentionH?: number
}

/** The YAML Litestream reads (v0.3 format). */
export function renderLitestreamConfig(dbPath: string, o: ReplicaOptions): string {
  const sync = o.syncIntervalMs ?? 1000
  if (!Number.isSafeInteger(sync) || sync < 100)
    throw claError('CLA_ERR_INVALID_OPTION', `sync interval must be ≥ 100 ms, got ${sync}`)
  return [
    '# Written by `clavitor core replica init`: meta.db streamed by Litestream (docs/operations.md).',
    'dbs:',
    `  - path: ${JSON.stringify(dbPath)}`,
    '    replicas:',
    `      - url: ${JSON.stringify(replicaUrl(o.replica))}`,
    `        sync-interval: ${sync}ms`,
    `        snapshot-interval: ${o.snapshotIntervalH ?? 24}h`,
    `        retention: ${o.retentionH ?? 72}h`,
    '',
  ].join('\n')
}

/** Writes {data}/litestream.yml (0600: an S3 or sftp URL may carry credentials). */
export function initReplica(dataDir: string, o: ReplicaOptions): string {
  const file = replicaConfigPath(dataDir)
  const text = renderLitestreamConfig(dataLayout(dataDir).db, o)
  makePrivateFile(file)
  writeFileSync(file, text)
  return file
}

/** The replica URL in {data}/litestream.yml, or null when replication is not set up. */
export function configuredReplica(dataDir: string): string | null {
  const file = replicaConfigPath(dataDir)
  if (!existsSync(file)) return null
  const m = /^\s*- url: "([^"]+)"/m.exec(readFileSync(file, 'utf8'))
  return m ? m[1]! : null
}

export interface ReplicaStatus {
  configured: boolean
  url: string | null
  /** Litestream's current generation of the replica (a new one after each restart gap). */
  generation: string | null
  /** µs epoch of the newest WAL segment or snapshot in the replica. */
  last_replicated_at: number | null
  /** µs epoch of the last change to meta.db (its WAL's mtime). */
  local_changed_at: number | null
  /** How far the replica is behind the last local change, ms, to the second (0: caught up). */
  lag_ms: number | null
}

/** Lines of `litestream wal|snapshots -config … DB` after the header: [generation, …, created]. */
async function listing(what: 'wal' | 'snapshots', dataDir: string): Promise<string[][]> {
  const r = await execa(
    litestreamBinary(),
    [what, '-config', replicaConfigPath(dataDir), dataLayout(dataDir).db],
    { reject: false },
  )
  if (r.exitCode !== 0)
    throw claError(
      'CLA_ERR_REPLICA_UNAVAILABLE',
      `litestream ${what}: ${r.stderr.trim() || r.stdout.trim()}`,
    )
  return r.stdout
    .split('\n')
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((c) => c.length >= 3)
}

/**
 * How far the replica is behind: the newest thing in it (WAL segment or snapshot)
 * against the last change to meta.db. Not configured: `configured: false`.
 */
export async function replicaStatus(dataDir: string): Promise<ReplicaStatus> {
  const url = configuredReplica(dataDir)
  if (url === null)
    return {
      configured: false,
      url: null,
      generation: null,
      last_replicated_at: null,
      local_changed_at: null,
      lag_ms: null,
    }
  const rows = [...(await listing('wal', dataDir)), ...(await listing('snapshots', dataDir))]
  let newest: number | null = null
  let generation: string | null = null
  for (const cols of rows) {
    const ms = Date.parse(cols[cols.length - 1]!)
    if (!Number.isNaN(ms) && (newest === null || ms > newest)) {
      newest = ms
      generation = cols[1] ?? null
    }
  }
  const db = dataLayout(dataDir).db
  const changed = [`${db}-wal`, db]
    .filter((f) => existsSync(f))
    .map((f) => statSync(f).mtimeMs)
    .reduce<number | null>((a, b) => (a === null || b > a ? b : a), null)
  return {
    configured: true,
    url,
    generation,
    last_replicated_at: newest === null ? null : Math.round(newest * 1000),
    local_changed_at: changed === null ? null : Math.round(changed * 1000),
    // Litestream lists times to the second: the lag has that resolution (0 = same second)
    lag_ms:
      changed === null
        ? null
        : newest === null
          ? Math.round(Date.now() - changed)
          : Math.max(0, Math.floor(changed / 1000) - Math.floor(newest / 1000)) * 1000,
  }
}

/**
 * Restores meta.db from a replica into `out` (which must not exist): the newest state the
 * replica holds, or the state at `timestamp` (RFC 3339). CLA_ERR_REPLICA_EMPTY when the
 * replica holds nothing.
 */
export async function restoreFromReplica(
  replica: string,
  out: string,
  opts: { timestamp?: string } = {},
): Promise<void> {
  if (existsSync(out))
    throw claError('CLA_ERR_EXISTS', `${out} exists; a restore never overwrites it`)
  const r = await execa(
    litestreamBinary(),
    [
      'restore',
      '-if-replica-exists',
      ...(opts.timestamp ? ['-timestamp', opts.timestamp] : []),
      '-o',
      out,
      replicaUrl(replica),
    ],
    { reject: false },
  )
  if (r.exitCode !== 0)
    throw claError(
      'CLA_ERR_REPLICA_UNAVAILABLE',
      `litestream restore: ${r.stderr.trim() || r.stdout.trim()}`,
    )
  if (!existsSync(out))
    throw claError('CLA_ERR_REPLICA_EMPTY', `the replica ${replica} holds no database to restore`)
}
