// The rsync transport: one bounded `rsync --files-from` run per feed page, never a
// whole-tree scan. rsync is the real implementation of the replication transport; every
// exit code is mapped to a stable reason (rsync(1), EXIT VALUES) and a typed error.
import { readdirSync, readFileSync } from 'node:fs'
import { basename } from 'node:path'
import { writeFile } from 'node:fs/promises'
import { execa } from 'execa'
import { claError, type ClavitorError, type ErrorCode } from '../errors.js'
import { isDaemonSource } from '../core-sync/rsync-auth.js'

/** rsync(1) EXIT VALUES → reason code and error class. */
export const RSYNC_EXIT: Readonly<
  Record<number, { reason: string; code: ErrorCode; text: string }>
> = {
  1: { reason: 'syntax', code: 'CLA_ERR_SYNC_RSYNC', text: 'syntax or usage error' },
  2: {
    reason: 'protocol_incompatible',
    code: 'CLA_ERR_SYNC_RSYNC',
    text: 'protocol incompatibility',
  },
  3: {
    reason: 'file_selection',
    code: 'CLA_ERR_SYNC_RSYNC',
    text: 'errors selecting input/output files or folders (unknown module or path?)',
  },
  4: { reason: 'unsupported', code: 'CLA_ERR_SYNC_RSYNC', text: 'requested action not supported' },
  5: {
    reason: 'start_protocol',
    code: 'CLA_ERR_SYNC_NETWORK',
    text: 'error starting client-server protocol (daemon refused or unreachable)',
  },
  6: {
    reason: 'daemon_log',
    code: 'CLA_ERR_SYNC_RSYNC',
    text: 'daemon unable to append to its log file',
  },
  10: { reason: 'socket_io', code: 'CLA_ERR_SYNC_NETWORK', text: 'error in socket I/O' },
  11: { reason: 'file_io', code: 'CLA_ERR_SYNC_RSYNC', text: 'error in file I/O' },
  12: {
    reason: 'protocol_stream',
    code: 'CLA_ERR_SYNC_NETWORK',
    text: 'error in rsync protocol data stream (connection lost?)',
  },
  13: {
    reason: 'diagnostics',
    code: 'CLA_ERR_SYNC_RSYNC',
    text: 'errors with program diagnostics',
  },
  14: { reason: 'ipc', code: 'CLA_ERR_SYNC_RSYNC', text: 'error in IPC code' },
  20: { reason: 'signal', code: 'CLA_ERR_SYNC_ABORTED', text: 'received SIGUSR1 or SIGINT' },
  21: { reason: 'waitpid', code: 'CLA_ERR_SYNC_RSYNC', text: 'some error returned by waitpid()' },
  22: {
    reason: 'out_of_memory',
    code: 'CLA_ERR_SYNC_RSYNC',
    text: 'error allocating core memory buffers',
  },
  23: { reason: 'partial', code: 'CLA_ERR_SYNC_PARTIAL', text: 'partial transfer due to error' },
  24: {
    reason: 'vanished',
    code: 'CLA_ERR_SYNC_PARTIAL',
    text: 'partial transfer due to vanished source files',
  },
  25: {
    reason: 'max_delete',
    code: 'CLA_ERR_SYNC_RSYNC',
    text: 'the --max-delete limit stopped deletions',
  },
  30: { reason: 'timeout', code: 'CLA_ERR_SYNC_NETWORK', text: 'timeout in data send/receive' },
  35: {
    reason: 'daemon_timeout',
    code: 'CLA_ERR_SYNC_NETWORK',
    text: 'timeout waiting for daemon connection',
  },
}

export interface RsyncRunOptions {
  /** Source root: `rsync://host:port/module/`, `user@host:/path/`, or a local folder. */
  source: string
  /** Relative paths under the source root (one feed page: keep it bounded). */
  files: readonly string[]
  /** Where the NUL-separated list is written (outside dest). */
  listFile: string
  /** Destination folder: a plain (not +a) staging folder on the store's filesystem. */
  dest: string
  /**
   * Put every file straight into `dest` under its own name (`--no-relative`) instead of
   * recreating `{shard}/{p0}/` under it. Callers must list no two files with the same name.
   * Why: with the implied relative paths, rsync's receiver spends CPU per listed folder,
   * more per file the longer the list (measured over the daemon, 30,000 one-blob p0
   * folders in pages of 1,000: client CPU 3.2–3.9 s, flat 1.7 s; one 30,000-line list:
   * 14–64 s); the store makes the p0 folders itself anyway.
   */
  flat?: boolean
  /** --timeout / --contimeout seconds. Default 30. */
  ioTimeoutSec?: number
  /** rsync binary. Default 'rsync'. */
  rsyncPath?: string
  /** Extra arguments (e.g. `-e 'ssh -i key'`, `--password-file`). */
  extraArgs?: readonly string[]
  /** Environment additions (e.g. RSYNC_PASSWORD). */
  env?: Record<string, string>
  /** Stops the child (SIGTERM) when aborted. */
  signal?: AbortSignal
  /** Called once per file rsync reports as transferred. */
  onFile?: (relPath: string) => void
  /**
   * Keep every line rsync reports (`RsyncResult.written`), not only the listed files: for a
   * recursive copy of folders, every file, folder and link it wrote, as `--out-format=%n`
   * names them (relative to dest, folders with a trailing `/`, anything unprintable escaped
   * with a backslash).
   */
  reportAll?: boolean
}

export interface RsyncResult {
  /** Paths rsync reported (in its order). */
  transferred: string[]
  /** With `reportAll`: every line rsync reported, in its order. */
  written?: string[]
  /** The exit code (0, or 23/24 when tolerated by the caller). */
  exitCode: number
  stderr: string
}

/** The pids of `pid` and all its descendants (Linux /proc). */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>()
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8')
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
      const list = children.get(ppid) ?? []
      list.push(Number(name))
      children.set(ppid, list)
    } catch {
      // gone meanwhile
    }
  }
  const out: number[] = []
  const walk = (p: number) => {
    out.push(p)
    for (const c of children.get(p) ?? []) walk(c)
  }
  walk(pid)
  return out
}

function killTree(pid: number | undefined, sig: NodeJS.Signals): void {
  if (pid === undefined) return
  let pids: number[] = [pid]
  try {
    pids = processTree(pid)
  } catch {
    // no /proc: the parent only
  }
  for (const p of pids.reverse()) {
    try {
      process.kill(p, sig)
    } catch {
      // already gone
    }
  }
}

/** Arguments for one page; exported for the benchmark and docs. */
export function rsyncArgs(
  opts: Pick<
    RsyncRunOptions,
    'source' | 'listFile' | 'dest' | 'ioTimeoutSec' | 'extraArgs' | 'flat'
  >,
): string[] {
  const timeout = String(opts.ioTimeoutSec ?? 30)
  const args = [
    '--files-from=' + opts.listFile,
    '--from0',
    // -a without -l -o -g -D: a POP keeps its own ownership; no devices ever; and no
    // symlinks (the store holds folders and regular files only): one from a lying sender,
    // as a shard or p0 folder, would let what reads, seals and sweeps the staged tree
    // (lib/store/tree-ingest.ts) reach whatever it points at. rsync skips them.
    '--recursive',
    '--times',
    '--perms',
    '--chmod=F0444',
    '--timeout=' + timeout,
    '--out-format=%n',
  ]
  if (opts.flat) args.push('--no-relative')
  if (isDaemonSource(opts.source)) {
    args.push('--contimeout=' + timeout)
    // Without it every protocol round trip over TCP can wait out a delayed ACK (Nagle):
    // measured on loopback, 100 files took 140–180 ms instead of 10–30 ms. The daemon
    // side needs the same (`socket options` in lib/core-sync/rsyncd-config.ts).
    args.push('--sockopts=TCP_NODELAY')
  }
  args.push(...(opts.extraArgs ?? []))
  const src = opts.source.endsWith('/') ? opts.source : opts.source + '/'
  const dst = opts.dest.endsWith('/') ? opts.dest : opts.dest + '/'
  args.push(src, dst)
  return args
}

/** Maps an rsync exit code (or a spawn failure) to a ClavitorError. */
export function rsyncError(
  exitCode: number | undefined,
  stderr: string,
  cause?: unknown,
): ClavitorError {
  const tail = stderr.trim().split('\n').slice(-3).join(' | ')
  if (/No space left on device/i.test(stderr)) {
    return claError('CLA_ERR_SYNC_DISK_FULL', `rsync: no space left on device: ${tail}`, {
      cause,
      details: { rsync_exit: exitCode, reason: 'disk_full' },
    })
  }
  // the daemon's slots are all taken (rsyncd claims one per connection before the login)
  const busy = /@ERROR: max connections \((\d+)\) reached/.exec(stderr)
  if (busy) {
    return claError(
      'CLA_ERR_SYNC_RSYNC_BUSY',
      `the core's rsync daemon is at its limit of ${busy[1]} connections (other clients hold every slot; see its log and the firewall's per-address limit); the next run retries`,
      {
        cause,
        details: { rsync_exit: exitCode ?? null, reason: 'max_connections', max: Number(busy[1]) },
      },
    )
  }
  // the daemon's refusals (exit 5): a wrong/missing password, or an address outside
  // `hosts allow` (with `list = no`, rsync 3.2+ answers "Unknown module" to hide it)
  const refused = /@ERROR: (auth failed|access denied|Unknown module)/.exec(stderr)
  if (refused) {
    const reason =
      refused[1] === 'auth failed'
        ? 'auth_failed'
        : refused[1] === 'access denied'
          ? 'access_denied'
          : 'unknown_module'
    const hint =
      reason === 'auth_failed'
        ? 'check the rsync user in the source and {data}/pop-auth/rsync.password'
        : reason === 'access_denied'
          ? "this address is not in the POP's allowlist"
          : "this address is not in the POP's allowlist, or the module name is wrong"
    return claError(
      'CLA_ERR_SYNC_RSYNC_AUTH',
      `the core's rsync daemon refused this POP (${hint}): ${tail}`,
      { cause, details: { rsync_exit: exitCode ?? null, reason } },
    )
  }
  const spec = exitCode === undefined ? undefined : RSYNC_EXIT[exitCode]
  if (!spec) {
    return claError(
      'CLA_ERR_SYNC_RSYNC',
      `rsync failed (exit ${exitCode ?? 'none'}): ${tail || 'no output'}`,
      {
        cause,
        details: {
          rsync_exit: exitCode ?? null,
          reason: exitCode === undefined ? 'spawn' : 'unknown_exit',
        },
      },
    )
  }
  return claError(spec.code, `rsync exit ${exitCode} (${spec.text}): ${tail || 'no output'}`, {
    cause,
    details: { rsync_exit: exitCode, reason: spec.reason },
  })
}

/**
 * Runs one rsync over a bounded list. Resolves for exit 0; with `tolerate` also for
 * exit 23/24 (partial: the caller ingests what arrived and stops before the first gap).
 * Throws a mapped ClavitorError otherwise.
 */
export async function runRsync(
  opts: RsyncRunOptions,
  tolerate: { partial?: boolean } = {},
): Promise<RsyncResult> {
  // rsync's --out-format %n names a file as it lands in dest: its path, or its name when flat
  const wanted = new Map<string, string>()
  for (const f of opts.files) {
    const key = opts.flat ? basename(f) : f
    if (wanted.has(key))
      throw claError(
        'CLA_ERR_SYNC_FEED',
        `${f} and ${wanted.get(key)} would land on the same staged name ${key}; refusing the page`,
        { details: { name: key } },
      )
    wanted.set(key, f)
  }
  await writeFile(opts.listFile, opts.files.map((f) => f + '\0').join(''))
  const args = rsyncArgs(opts)
  const transferred: string[] = []
  const written: string[] | undefined = opts.reportAll ? [] : undefined
  const child = execa(opts.rsyncPath ?? 'rsync', args, {
    reject: false,
    cancelSignal: opts.signal,
    forceKillAfterDelay: 5000,
    env: opts.env ?? {},
    stdin: 'ignore',
    lines: false,
    stripFinalNewline: false,
  })
  // Watchdog: rsync's own --timeout does not fire in every state of a cut link (seen with a
  // veth taken down mid-transfer: the client waited forever). No output for
  // max(2 × timeout, 10 s) kills it; that is a network failure like any other.
  const idleMs = Math.max(2 * (opts.ioTimeoutSec ?? 30), 10) * 1000
  let last = Date.now()
  let stalled = false
  const dog = setInterval(() => {
    if (!stalled && Date.now() - last > idleMs) {
      stalled = true
      killTree(child.pid, 'SIGKILL')
    }
  }, 500)
  // rsync forks (generator/receiver): a signal to the parent alone can leave a child
  // holding our pipes open, so an abort reaches the whole tree.
  const onAbort = () => {
    killTree(child.pid, 'SIGTERM')
    setTimeout(() => killTree(child.pid, 'SIGKILL'), 5000).unref()
  }
  opts.signal?.addEventListener('abort', onAbort, { once: true })
  child.stderr?.on('data', () => {
    last = Date.now()
  })
  let buf = ''
  child.stdout?.on('data', (chunk: Buffer) => {
    last = Date.now()
    buf += chunk.toString('utf8')
    let nl: number
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      written?.push(line)
      const path = wanted.get(line)
      if (path !== undefined) {
        transferred.push(path)
        opts.onFile?.(path)
      }
    }
  })
  const res = await child.finally(() => {
    clearInterval(dog)
    opts.signal?.removeEventListener('abort', onAbort)
  })
  if (stalled) {
    throw claError(
      'CLA_ERR_SYNC_NETWORK',
      `rsync made no progress for ${idleMs / 1000} s (connection lost?); stopped it`,
      {
        details: { rsync_exit: res.exitCode ?? null, reason: 'stalled' },
      },
    )
  }
  if (opts.signal?.aborted || res.isCanceled) {
    throw claError('CLA_ERR_SYNC_ABORTED', 'rsync stopped: the pull was aborted', {
      details: { reason: 'aborted' },
    })
  }
  const stderr = String(res.stderr ?? '')
  if (res.failed && res.exitCode === undefined) {
    throw rsyncError(undefined, stderr || String(res.message ?? ''), res)
  }
  const code = res.exitCode ?? -1
  if (code === 0 || (tolerate.partial && (code === 23 || code === 24))) {
    return { transferred, exitCode: code, stderr, ...(written ? { written } : {}) }
  }
  throw rsyncError(code, stderr)
}
