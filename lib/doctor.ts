// Host checks for `clavitor doctor`: what an operator wants to know before trusting a core
// or a POP on this machine. Each check is independent and returns a verdict; none throws.
import { X509Certificate } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, statSync, statfsSync } from 'node:fs'
import { dataLayout, ensureDataDir, openBits } from './db/data-dir.js'
import { systemClock, type Clock } from './clock.js'
import { configuredReplica, replicaStatus } from './db/replica.js'
import { join } from 'node:path'
import { execa } from 'execa'
import { caPaths, popAuthPaths } from './auth/ca.js'
import { probeSealing } from './store/seal.js'

export type Verdict = 'ok' | 'warn' | 'fail' | 'skip'

export interface Check {
  name: string
  verdict: Verdict
  detail: string
}

export interface DoctorOptions {
  dataDir: string
  /** The core's base URL, to measure clock skew from its Date header (POPs). */
  coreUrl?: string
  /** Warn below this much free space on the data folder's filesystem. Default 1 GiB. */
  minFreeBytes?: number
  /** Warn when a certificate expires within this many days. Default 30. */
  certWarnDays?: number
  /** Skew above this many seconds fails (signed requests have a window). Default 30. */
  maxSkewSeconds?: number
  /** meta.db's Litestream replica further behind than this many seconds fails. Default 60. */
  maxReplicaLagSeconds?: number
  /** The clock (lib/clock.ts). Default the system's. */
  clock?: Clock
  /** Injectable fetch for the skew check (defaults to the global fetch). */
  fetch?: typeof fetch
}

export const MIN_RSYNC = [3, 1, 0] as const

export async function checkRsync(): Promise<Check> {
  const r = await execa('rsync', ['--version'], { reject: false, stdin: 'ignore' })
  if (r.failed && (r as { code?: string }).code === 'ENOENT') {
    return {
      name: 'rsync',
      verdict: 'fail',
      detail: 'rsync is not installed: apt-get install rsync',
    }
  }
  const m = /version\s+v?(\d+)\.(\d+)\.(\d+)/.exec(String(r.stdout))
  if (!m) return { name: 'rsync', verdict: 'fail', detail: 'cannot read the version of rsync' }
  const v = [Number(m[1]), Number(m[2]), Number(m[3])]
  const tooOld = v[0]! < MIN_RSYNC[0] || (v[0] === MIN_RSYNC[0] && v[1]! < MIN_RSYNC[1])
  return {
    name: 'rsync',
    verdict: tooOld ? 'fail' : 'ok',
    detail: `rsync ${v.join('.')}${tooOld ? ` is older than ${MIN_RSYNC.join('.')}` : ''}`,
  }
}

export async function checkSealing(dataDir: string): Promise<Check> {
  const dir = dataLayout(dataDir).staging
  try {
    mkdirSync(dir, { recursive: true })
  } catch (err) {
    return {
      name: 'chattr',
      verdict: 'fail',
      detail: `cannot create ${dir}: ${(err as Error).message}`,
    }
  }
  const probe = await probeSealing(dir)
  return probe.honoured
    ? {
        name: 'chattr',
        verdict: 'ok',
        detail: 'the store filesystem honours chattr +i (protection can be enforce)',
      }
    : {
        name: 'chattr',
        verdict: 'warn',
        detail: `sealing not honoured: ${probe.reason}; only best-effort or off will run`,
      }
}

/** {data} 0700 and meta.db 0600 (lib/db/data-dir.ts): others must not read what is there. */
export function checkModes(dataDir: string): Check {
  const open: string[] = []
  const dirBits = openBits(dataDir)
  if (dirBits) open.push(`${dataDir} is mode ${modeOf(dataDir)} (chmod 700 it)`)
  const db = dataLayout(dataDir).db
  for (const file of [db, `${db}-wal`, `${db}-shm`]) {
    if (openBits(file)) open.push(`${file} is mode ${modeOf(file)} (chmod 600 it)`)
  }
  return open.length === 0
    ? { name: 'modes', verdict: 'ok', detail: 'the data folder and meta.db are private' }
    : { name: 'modes', verdict: 'warn', detail: open.join('; ') }
}

function modeOf(path: string): string {
  return (statSync(path).mode & 0o777).toString(8).padStart(3, '0')
}

export function checkDisk(dataDir: string, minFreeBytes = 1024 ** 3): Check {
  try {
    const s = statfsSync(dataDir)
    const free = s.bavail * s.bsize
    const total = s.blocks * s.bsize
    const gib = (n: number) => `${(n / 1024 ** 3).toFixed(1)} GiB`
    return {
      name: 'disk',
      verdict: free < minFreeBytes ? 'warn' : 'ok',
      detail: `${gib(free)} free of ${gib(total)} on the data folder's filesystem`,
    }
  } catch (err) {
    return {
      name: 'disk',
      verdict: 'fail',
      detail: `cannot stat ${dataDir}: ${(err as Error).message}`,
    }
  }
}

/** Every certificate this data folder holds (CA, core server, POP client), with its expiry. */
export function checkCertificates(dataDir: string, warnDays = 30, now = Date.now()): Check[] {
  const ca = caPaths(dataDir)
  const pop = popAuthPaths(dataDir)
  const files: Array<[string, string]> = [
    ['CA certificate', ca.cert],
    ['core server certificate', ca.serverCert],
    ['POP client certificate', pop.cert],
    ['POP copy of the CA', pop.ca],
  ]
  const out: Check[] = []
  for (const [label, file] of files) {
    if (!existsSync(file)) continue
    try {
      const cert = new X509Certificate(readFileSync(file))
      const expires = Date.parse(cert.validTo)
      const days = Math.floor((expires - now) / 86_400_000)
      const verdict: Verdict = days < 0 ? 'fail' : days < warnDays ? 'warn' : 'ok'
      out.push({
        name: `cert: ${label}`,
        verdict,
        detail:
          days < 0 ? `expired on ${cert.validTo}` : `expires in ${days} days (${cert.validTo})`,
      })
    } catch (err) {
      out.push({
        name: `cert: ${label}`,
        verdict: 'fail',
        detail: `unreadable ${file}: ${(err as Error).message}`,
      })
    }
  }
  if (out.length === 0)
    out.push({
      name: 'certificates',
      verdict: 'skip',
      detail: 'no certificates in this data folder',
    })
  return out
}

/** Clock skew against the core, from its HTTP Date header (1 s resolution, good enough). */
export async function checkClockSkew(
  coreUrl: string,
  maxSkewSeconds = 30,
  now: () => number = Date.now,
  doFetch: typeof fetch = fetch,
): Promise<Check> {
  try {
    const before = now()
    const res = await doFetch(new URL('/healthz', coreUrl), { signal: AbortSignal.timeout(5000) })
    const after = now()
    const date = res.headers.get('date')
    if (!date) return { name: 'clock', verdict: 'warn', detail: 'the core sent no Date header' }
    const skew = (Date.parse(date) - (before + after) / 2) / 1000
    return {
      name: 'clock',
      verdict: Math.abs(skew) > maxSkewSeconds ? 'fail' : 'ok',
      detail: `clock skew against the core: ${skew.toFixed(1)} s (limit ${maxSkewSeconds} s)`,
    }
  } catch (err) {
    const cause = (err as { cause?: { message?: string } }).cause?.message
    return {
      name: 'clock',
      verdict: 'fail',
      detail: `cannot reach ${coreUrl}: ${(err as Error).message}${cause ? ` (${cause})` : ''}`,
    }
  }
}

/**
 * meta.db's replica (lib/db/replica.ts): skipped where none is configured (a POP, or a core
 * without `core replica init`); fails when Litestream is missing or the replica is more
 * than `maxLagS` behind the last change to meta.db (Litestream stopped, the target full or
 * unreachable). The lag has a resolution of one second.
 */
export async function checkReplica(dataDir: string, maxLagS = 60): Promise<Check> {
  if (configuredReplica(dataDir) === null)
    return {
      name: 'replica',
      verdict: 'skip',
      detail: 'meta.db is not replicated here (on a core: clavitor core replica init)',
    }
  try {
    const s = await replicaStatus(dataDir)
    const lag = s.lag_ms ?? 0
    const when = s.last_replicated_at
      ? new Date(s.last_replicated_at / 1000).toISOString()
      : 'never'
    if (s.last_replicated_at === null || lag > maxLagS * 1000)
      return {
        name: 'replica',
        verdict: 'fail',
        detail: `${s.url}: ${lag / 1000} s behind meta.db (last replicated ${when}); is clavitor-litestream running?`,
      }
    return {
      name: 'replica',
      verdict: 'ok',
      detail: `${s.url}: ${lag / 1000} s behind (last ${when})`,
    }
  } catch (err) {
    return { name: 'replica', verdict: 'fail', detail: (err as Error).message }
  }
}

export async function runDoctor(opts: DoctorOptions): Promise<{ ok: boolean; checks: Check[] }> {
  ensureDataDir(opts.dataDir)
  const checks: Check[] = [
    checkModes(opts.dataDir),
    await checkRsync(),
    await checkSealing(opts.dataDir),
    checkDisk(opts.dataDir, opts.minFreeBytes),
    ...checkCertificates(opts.dataDir, opts.certWarnDays, (opts.clock ?? systemClock).now()),
    await checkReplica(opts.dataDir, opts.maxReplicaLagSeconds),
  ]
  if (opts.coreUrl)
    checks.push(
      await checkClockSkew(
        opts.coreUrl,
        opts.maxSkewSeconds,
        () => (opts.clock ?? systemClock).now(),
        opts.fetch,
      ),
    )
  else checks.push({ name: 'clock', verdict: 'skip', detail: 'no --core URL given' })
  return { ok: checks.every((c) => c.verdict !== 'fail'), checks }
}
