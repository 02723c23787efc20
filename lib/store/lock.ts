// The store's writer lock: one live writer process per data folder, so sequence numbers
// and created_at are assigned in one place and index rows commit in cursor order.
// {data}/store.lock holds {pid, start} (start = the process start time from /proc, which
// guards against pid reuse). A lock whose process is gone is stale: the next writer takes
// it over and reports `stale: true` so the store recovers the dead writer's files first.
import { closeSync, openSync, readFileSync, rmSync, writeSync, fsyncSync } from 'node:fs'
import { claError } from '../errors.js'

interface LockBody {
  pid: number
  start: string | null
}

function startTimeOf(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    // Field 22 (starttime), counted after the ")" that closes the command name.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return rest[19] ?? null
  } catch {
    return null
  }
}

function isAlive(body: LockBody): boolean {
  try {
    process.kill(body.pid, 0)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false
  }
  const start = startTimeOf(body.pid)
  return body.start === null || start === null || start === body.start
}

/** The pid of a live process holding the lock at `file`, or undefined. */
export function liveLockHolder(file: string): number | undefined {
  let body: LockBody
  try {
    body = JSON.parse(readFileSync(file, 'utf8')) as LockBody
  } catch {
    return undefined
  }
  return typeof body.pid === 'number' && isAlive(body) ? body.pid : undefined
}

export interface WriterLock {
  file: string
  /** True when a dead writer's lock was taken over (its work must be recovered). */
  stale: boolean
  release(): void
}

export function acquireWriterLock(file: string): WriterLock {
  const me: LockBody = { pid: process.pid, start: startTimeOf(process.pid) }
  let stale = false
  for (let attempt = 0; attempt < 5; attempt++) {
    let fd: number
    try {
      fd = openSync(file, 'wx', 0o644)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw claError('CLA_ERR_INTERNAL', `cannot create ${file}: ${(err as Error).message}`, {
          cause: err,
        })
      }
      let body: LockBody | undefined
      try {
        body = JSON.parse(readFileSync(file, 'utf8')) as LockBody
      } catch {
        body = undefined // empty or torn: its writer died while creating it
      }
      if (body && typeof body.pid === 'number' && isAlive(body)) {
        throw claError(
          'CLA_ERR_STORE_LOCKED',
          `another process (pid ${body.pid}) is writing this store; stop it or use its API (lock: ${file})`,
          { details: { pid: body.pid, file } },
        )
      }
      rmSync(file, { force: true })
      stale = true
      continue
    }
    try {
      writeSync(fd, JSON.stringify(me))
      fsyncSync(fd)
    } finally {
      closeSync(fd)
    }
    let released = false
    return {
      file,
      stale,
      release() {
        if (released) return
        released = true
        rmSync(file, { force: true })
      },
    }
  }
  throw claError('CLA_ERR_STORE_LOCKED', `could not take the writer lock ${file}; retry`)
}
