// The rsync channel in the audit trail, one row per session instead of one per file.
//
// The core's rsync daemon runs apart from the core (its own unit, as root, chrooted). Its
// config (rsyncd-config.ts) turns on `transfer logging` with our own line format, so its
// log file says, per connection (rsyncd's [pid]): who logged in from where, each file
// sent with its size, and how the session ended. A pass reads the lines added since the
// last pass and writes to the hash-chained log:
//
//   - one `pop.rsync` row per finished session: actor = the POP (from its rsync user),
//     outcome `allowed` (or `failed` when rsync ended in an error), the client address,
//     data {pid, files, bytes, started, ended, feed_event}: feed_event is the id of the
//     POP's last allowed feed request at or before the session (the page it pulled);
//   - one `pop.rsync` row per failed login (`auth_failed`), like every refusal that
//     reached authentication;
//   - connections refused by `hosts allow` before any login: one row per address per pass
//     with their count (`host_denied`), never one per connection.
//
// The read position, the log's inode and the sessions still open are kept in `meta` and
// updated in the same transaction as the rows, so a crash never audits a line twice.
// A rotated log (another inode, or shorter than the position) is read from its start.
import { closeSync, fstatSync, openSync, readSync, writeFileSync } from 'node:fs'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { getMeta, setMeta } from '../db/meta.js'
import { appendEvent } from '../audit/log.js'

/** rsyncd's `log format` for transferred files (one line per file, never audited alone). */
export const RSYNCD_XFER_LOG_FORMAT = 'clavitor-xfer %o %l %n'

const STATE_KEY = 'rsync_audit_state'
/** Read at most this much log per chunk; a pass loops until the end of the file. */
const CHUNK = 4 * 1024 * 1024

interface OpenSession {
  user: string
  ip: string
  started: string
  files: number
  bytes: number
}

interface State {
  ino: number
  offset: number
  open: Record<string, OpenSession>
}

export interface RsyncAuditResult {
  /** Log lines read in this pass. */
  lines: number
  /** Finished sessions audited. */
  sessions: number
  /** Failed logins audited. */
  authFailures: number
  /** Connections refused by `hosts allow`, summed into per-address rows. */
  denied: number
  /** Sessions still open at the end of the pass (finished by a later pass). */
  open: number
}

// 2026/12/02 18:04:15 [20176] message
const LINE = /^(\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d) \[(\d+)\] (.*)$/
const START = /^rsync on \S+ from (\S+)@\S* \(([^)]+)\)$/
const XFER = /^clavitor-xfer send (\d+) /
const END = /^sent (\d+) bytes\s+received (\d+) bytes/
const ERROR = /^rsync error: (.*)$/
const AUTH_FAILED = /^auth failed on module \S+ from \S* \(([^)]+)\) for (\S+?): (.*)$/
const DENIED = /^rsync denied on module \S+ from \S* \(([^)]+)\)$/

function loadState(db: Db): State {
  const raw = getMeta(db, STATE_KEY)
  return raw ? (JSON.parse(raw) as State) : { ino: 0, offset: 0, open: {} }
}

/**
 * Audits the rsync daemon's log lines added since the last pass (see the file comment).
 * A missing log file is not an error: nothing to read yet.
 */
export function auditRsyncLog(db: Db, logFile: string): RsyncAuditResult {
  const result: RsyncAuditResult = { lines: 0, sessions: 0, authFailures: 0, denied: 0, open: 0 }
  let fd: number
  try {
    fd = openSync(logFile, 'r')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return result
    throw err
  }
  try {
    const popOfUser = db.prepare('SELECT id FROM pops WHERE rsync_user = ?').pluck()
    const lastFeed = db
      .prepare(
        `SELECT id FROM events WHERE kind = 'pop.request' AND actor = ? AND outcome = 'allowed'
         AND route = 'GET /pop/v1/feed' ORDER BY id DESC LIMIT 1`,
      )
      .pluck()
    const actorOf = (user: string) => (popOfUser.get(user) as string | undefined) ?? 'unknown'
    const st = fstatSync(fd)
    let state = loadState(db)
    if (state.ino !== st.ino || st.size < state.offset) state = { ino: st.ino, offset: 0, open: {} }
    const denied = new Map<string, number>()

    const onLine = (line: string) => {
      const m = LINE.exec(line)
      if (!m) return
      const [, when, pid, msg] = m as unknown as [string, string, string, string]
      const s = state.open[pid]
      let x: RegExpExecArray | null
      if ((x = START.exec(msg))) {
        state.open[pid] = { user: x[1]!, ip: x[2]!, started: when, files: 0, bytes: 0 }
      } else if (s && (x = XFER.exec(msg))) {
        s.files++
        s.bytes += Number(x[1])
      } else if (s && ((x = END.exec(msg)) || (x = ERROR.exec(msg)))) {
        const failed = msg.startsWith('rsync error')
        const actor = actorOf(s.user)
        appendEvent(db, {
          kind: 'pop.rsync',
          actor,
          outcome: failed ? 'failed' : 'allowed',
          ...(failed ? { reason: 'rsync_error' } : {}),
          ip: s.ip,
          data: {
            pid: Number(pid),
            user: s.user,
            files: s.files,
            bytes: s.bytes,
            started: s.started,
            ended: when,
            feed_event: actor === 'unknown' ? null : ((lastFeed.get(actor) as number) ?? null),
            ...(failed ? { error: x[1]!.slice(0, 300) } : {}),
          },
        })
        delete state.open[pid]
        result.sessions++
      } else if ((x = AUTH_FAILED.exec(msg))) {
        appendEvent(db, {
          kind: 'pop.rsync',
          actor: actorOf(x[2]!),
          outcome: 'refused',
          reason: 'auth_failed',
          ip: x[1]!,
          data: { pid: Number(pid), user: x[2]!, why: x[3]!.slice(0, 200), at: when },
        })
        result.authFailures++
      } else if ((x = DENIED.exec(msg))) {
        denied.set(x[1]!, (denied.get(x[1]!) ?? 0) + 1)
        result.denied++
      }
    }

    db.transaction(() => {
      const buf = Buffer.alloc(CHUNK)
      let carry = ''
      for (;;) {
        const n = readSync(fd, buf, 0, CHUNK, state.offset + Buffer.byteLength(carry))
        if (n === 0) break
        const text = carry + buf.subarray(0, n).toString('utf8')
        const end = text.lastIndexOf('\n')
        if (end < 0) {
          carry = text
          continue
        }
        for (const line of text.slice(0, end).split('\n')) {
          result.lines++
          onLine(line)
        }
        state.offset += Buffer.byteLength(text.slice(0, end + 1))
        carry = text.slice(end + 1) // a line still being written: read again next pass
      }
      const at = nowMicros()
      for (const [ip, count] of denied) {
        appendEvent(db, {
          kind: 'pop.rsync',
          actor: 'unknown',
          outcome: 'refused',
          reason: 'host_denied',
          ip,
          at,
          data: { count },
        })
      }
      setMeta(db, STATE_KEY, JSON.stringify(state))
    })()
    result.open = Object.keys(state.open).length
    return result
  } finally {
    closeSync(fd)
  }
}

/**
 * Runs a pass every `intervalMs` (default 60 s) while the process runs; failures go to
 * `onError`. Returns a stop function.
 */
export function startRsyncAuditTimer(
  db: Db,
  logFile: string,
  opts: { intervalMs?: number; onError?: (err: unknown) => void } = {},
): () => void {
  const timer = setInterval(() => {
    try {
      auditRsyncLog(db, logFile)
    } catch (err) {
      opts.onError?.(err)
    }
  }, opts.intervalMs ?? 60_000)
  timer.unref()
  return () => clearInterval(timer)
}

/**
 * Creates the daemon's log file (empty, mode 0600, owned by the caller: the core's user)
 * unless it exists. rsyncd runs as root and appends to an existing file as it is, so the
 * core can read it without the log being readable by everyone.
 */
export function prepareRsyncdLogFile(file: string): void {
  try {
    writeFileSync(file, '', { flag: 'wx', mode: 0o600 })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
  }
}
