// Sealing with Linux file attributes through chattr (e2fsprogs), batched: one process per
// batch of paths, with long argument lists cut into chunks like xargs does.
//   +i on sealed files: no write, truncate, rename, link or unlink.
//   +a on p0, shard and root folders: names may be added, none removed or renamed.
import { randomBytes } from 'node:crypto'
import {
  lstatSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
  type Dirent,
  type Stats,
} from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { execa } from 'execa'
import { claError, isNoSpace } from '../errors.js'
import { decodeCla } from './format.js'
import { isValidP0, shardOf } from './p0.js'

/** Max bytes of path arguments per chattr/lsattr process (well under ARG_MAX). */
export const ARG_CHUNK_BYTES = 96 * 1024

export function chunkArgs(paths: readonly string[], maxBytes = ARG_CHUNK_BYTES): string[][] {
  const chunks: string[][] = []
  let cur: string[] = []
  let bytes = 0
  for (const p of paths) {
    const len = Buffer.byteLength(p) + 1
    if (cur.length > 0 && bytes + len > maxBytes) {
      chunks.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(p)
    bytes += len
  }
  if (cur.length > 0) chunks.push(cur)
  return chunks
}

/** Runs `chattr FLAGS -- paths…` in as few processes as the argument limit allows. */
export async function chattr(flags: string[], paths: readonly string[]): Promise<void> {
  for (const chunk of chunkArgs(paths)) {
    try {
      await execa('chattr', [...flags, '--', ...chunk], { stdin: 'ignore' })
    } catch (cause) {
      const e = cause as { stderr?: string; shortMessage?: string; message: string }
      const why = (e.stderr || e.shortMessage || e.message).trim().split('\n')[0]
      throw claError(
        'CLA_ERR_SEAL_FAILED',
        `chattr ${flags.join(' ')} failed on ${chunk.length} path(s): ${why}`,
        {
          cause,
          details: { first: chunk[0] },
        },
      )
    }
  }
}

function syncError(count: number, why: string, first: string | undefined, cause?: unknown) {
  return claError(
    'CLA_ERR_STORE_SYNC_FAILED',
    `sync -f (syncfs) failed on ${count} path(s): ${why.trim()}`,
    { ...(cause !== undefined ? { cause } : {}), details: { first } },
  )
}

/** syncfs(2) of the filesystems holding `paths`, one `sync -f` process per chunk. */
export async function syncfs(paths: readonly string[]): Promise<void> {
  for (const chunk of chunkArgs(paths)) {
    try {
      await execa('sync', ['-f', '--', ...chunk], { stdin: 'ignore' })
    } catch (cause) {
      const e = cause as { stderr?: string; shortMessage?: string; message: string }
      const why = (e.stderr || e.shortMessage || e.message).split('\n')[0]!
      throw syncError(chunk.length, why, chunk[0], cause)
    }
  }
}

export const sealFiles = (paths: readonly string[]) => chattr(['+i'], paths)
export const sealDirs = (paths: readonly string[]) => chattr(['+a'], paths)

/**
 * Reads attribute flags with `lsattr -d`, batched. Returns a map path → flag string (the
 * first column, e.g. `----i---------e-------`). Paths lsattr cannot read are absent.
 */
export async function readAttrs(paths: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const chunk of chunkArgs(paths)) {
    const r = await execa('lsattr', ['-d', '--', ...chunk], { stdin: 'ignore', reject: false })
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf(' ')
      if (i > 0) out.set(line.slice(i + 1), line.slice(0, i))
    }
  }
  return out
}

export const hasFlag = (flags: string | undefined, f: 'i' | 'a'): boolean =>
  flags !== undefined && flags.includes(f)

/** Whether the filesystem honours chattr +i for this process (probeSealing). */
export interface ProbeResult {
  /** True when chattr +i works here: a sealed probe file could not be unlinked. */
  honoured: boolean
  /** Why not, when not honoured (e.g. chattr missing, no permission, a full disk). */
  reason?: string
}

/**
 * Checks once whether this filesystem honours chattr +i for us: seals a probe file in
 * `dir`, checks that unlink is refused, then unseals and removes it.
 */
export async function probeSealing(dir: string, sealedDir?: string): Promise<ProbeResult> {
  const probe = join(dir, `.seal-probe-${randomBytes(6).toString('hex')}`)
  try {
    writeFileSync(probe, 'probe')
  } catch (err) {
    rmSync(probe, { force: true }) // created empty, then the write failed: no leftover
    if (!isNoSpace(err)) throw err
    // A full disk has no room for a probe file, and read-only work (verify, status, a
    // lookup) needs none: judge from a folder the store sealed at init (+a on its root).
    if (sealedDir && hasFlag((await readAttrs([sealedDir])).get(sealedDir), 'a'))
      return { honoured: true }
    return { honoured: false, reason: 'the disk is full: no room to probe chattr' }
  }
  try {
    try {
      await execa('chattr', ['+i', '--', probe], { stdin: 'ignore' })
    } catch (cause) {
      const e = cause as { stderr?: string; code?: string; shortMessage?: string }
      const why =
        e.code === 'ENOENT'
          ? 'chattr is not installed (apt-get install e2fsprogs)'
          : (e.stderr || e.shortMessage || 'chattr failed').trim()
      return { honoured: false, reason: why.split('\n')[0]! }
    }
    try {
      unlinkSync(probe)
      return {
        honoured: false,
        reason: 'chattr +i succeeded but the filesystem still allowed unlink',
      }
    } catch {
      return { honoured: true }
    }
  } finally {
    await execa('chattr', ['-i', '--', probe], { stdin: 'ignore', reject: false })
    rmSync(probe, { force: true })
  }
}

/** Clears +i/+a under `dir` recursively (teardown, staging cleanup). Never throws. */
export async function unsealTree(dir: string): Promise<void> {
  await execa('chattr', ['-R', '-i', '-a', '--', dir], { stdin: 'ignore', reject: false })
}

const MARK = '@@clavitor-seal'

/** Quotes one argument for sh: single quotes, with ' written as '\''. */
export const shQuote = (s: string): string => `'${s.replaceAll("'", `'\\''`)}'`

interface SealRequest {
  cmd: 'chattr' | 'sync'
  label: string
  first: string | undefined
  count: number
  out: string[]
  resolve: () => void
  reject: (err: unknown) => void
}

/**
 * A long-lived `sh` (started through execa) that runs one `chattr` per batch on request:
 * forking chattr from a small shell costs far less than spawning it from a large Node
 * process, which matters when groups are small. Requests are answered in order; the shell
 * is restarted if it dies. Idle, it does not keep the event loop alive.
 */
export class Sealer {
  private proc: ReturnType<typeof execa> | null = null
  private queue: SealRequest[] = []
  private buf = ''
  private closed = false

  async chattr(flags: string[], paths: readonly string[]): Promise<void> {
    for (const chunk of chunkArgs(paths)) await this.run(chunk, 'chattr', flags)
  }

  seal(files: readonly string[], dirs: readonly string[]): Promise<unknown> {
    return Promise.all([
      files.length ? this.chattr(['+i'], files) : null,
      dirs.length ? this.chattr(['+a'], dirs) : null,
    ])
  }

  close(): void {
    this.closed = true
    const p = this.proc
    this.proc = null
    if (p) {
      p.stdin?.end()
      p.kill('SIGTERM')
    }
  }

  /**
   * syncfs(2) of the filesystem(s) holding `paths` (coreutils `sync -f`), forked by the
   * shell: every dirty page and inode of those filesystems is written and the journal
   * committed before it resolves. A failure (EIO, ENOSPC at writeback) rejects with
   * CLA_ERR_STORE_SYNC_FAILED, the kernel's message included.
   */
  async syncfs(paths: readonly string[]): Promise<void> {
    for (const chunk of chunkArgs(paths)) await this.run(chunk, 'sync', ['-f'])
  }

  private run(
    chunk: string[],
    cmd: 'chattr' | 'sync' = 'chattr',
    flags: string[] = [],
  ): Promise<void> {
    if (this.closed) return cmd === 'sync' ? syncfs(chunk) : chattr(flags, chunk)
    const proc = this.ensure()
    return new Promise<void>((resolve, reject) => {
      this.queue.push({
        cmd,
        label: flags.join(' '),
        first: chunk[0],
        count: chunk.length,
        out: [],
        resolve,
        reject,
      })
      this.setRef(true)
      const line = `${cmd} ${flags.join(' ')} -- ${chunk.map(shQuote).join(' ')} 2>&1; echo "${MARK} $?"\n`
      proc.stdin!.write(line)
    })
  }

  private ensure(): ReturnType<typeof execa> {
    if (this.proc) return this.proc
    const p = execa('sh', [], {
      stdin: 'pipe',
      stdout: 'pipe',
      stderr: 'ignore',
      buffer: false,
      reject: false,
    })
    this.proc = p
    this.buf = ''
    p.stdout!.setEncoding('utf8')
    p.stdout!.on('data', (d: string) => this.onData(d))
    p.stdin!.on('error', () => undefined) // EPIPE: handled by the exit below
    void p.then(() => this.onExit(p))
    this.setRef(false)
    return p
  }

  private setRef(on: boolean): void {
    const p = this.proc
    if (!p) return
    for (const h of [p, p.stdin, p.stdout] as Array<{
      ref?: () => void
      unref?: () => void
    } | null>) {
      if (on) h?.ref?.()
      else h?.unref?.()
    }
  }

  private onData(d: string): void {
    this.buf += d
    let nl: number
    while ((nl = this.buf.indexOf('\n')) >= 0) {
      const line = this.buf.slice(0, nl)
      this.buf = this.buf.slice(nl + 1)
      const req = this.queue[0]
      if (!req) continue
      if (line.startsWith(MARK + ' ')) {
        this.queue.shift()
        const rc = Number(line.slice(MARK.length + 1))
        if (rc === 0) req.resolve()
        else {
          const why = req.out.find((l) => l.trim()) ?? `exit ${rc}`
          req.reject(
            req.cmd === 'sync'
              ? syncError(req.count, why, req.first)
              : claError(
                  'CLA_ERR_SEAL_FAILED',
                  `chattr ${req.label} failed on ${req.count} path(s): ${why.trim()}`,
                  {
                    details: { first: req.first },
                  },
                ),
          )
        }
        if (this.queue.length === 0) this.setRef(false)
      } else req.out.push(line)
    }
  }

  private onExit(p: ReturnType<typeof execa>): void {
    if (this.proc === p) this.proc = null
    const pending = this.queue
    this.queue = []
    for (const r of pending) {
      r.reject(
        r.cmd === 'sync'
          ? syncError(r.count, 'the shell exited first', r.first)
          : claError(
              'CLA_ERR_SEAL_FAILED',
              `the chattr shell exited before sealing ${r.count} path(s)`,
            ),
      )
    }
  }
}

/**
 * Removes a staging tree that may hold names of sealed store files. A crash between
 * "link into the store" and "unlink the staged name" leaves a second name of a store file;
 * once recovery seals that file (+i is per inode), the staged name cannot be removed and
 * every later cleanup of the staging area would fail. Clearing +i on the staged name
 * would unseal the store file too, so each such file is re-sealed under its store name
 * ({storeRoot}/{shard}/{p0}/{name}, same inode) right after the staged name is gone.
 * The p0 is the staged file's folder name, or (flat staging) read from its header.
 * Returns the store files that were re-sealed.
 */
/** The store path a staged blob would have: p0 from its folder, else from its header. */
function storeNameOf(file: string, storeRoot: string): string | undefined {
  let p0 = basename(dirname(file))
  if (!isValidP0(p0)) {
    try {
      p0 = decodeCla(readFileSync(file)).p0
    } catch {
      return undefined // not a blob: it cannot be a store file's second name
    }
  }
  return join(storeRoot, shardOf(p0), p0, basename(file))
}

export async function removeStagingTree(dir: string, storeRoot: string): Promise<string[]> {
  try {
    rmSync(dir, { recursive: true, force: true })
    return []
  } catch {
    // fall through: something in it is sealed
  }
  // Sealed names in staging: a bootstrap's verified files (+i before they moved), or the
  // second name of a store file a crash left between link and unlink. One chattr -R clears
  // the lot; a second name shares its inode with the store's file, which then lost its +i
  // too and is sealed again once its staged name is gone.
  await unsealTree(dir)
  const resealed: string[] = []
  const walk = (d: string): string[] => {
    let ents: Dirent[]
    try {
      ents = readdirSync(d, { withFileTypes: true })
    } catch {
      return []
    }
    return ents.flatMap((e) => (e.isDirectory() ? walk(join(d, e.name)) : [join(d, e.name)]))
  }
  for (const file of walk(dir)) {
    let st: Stats
    try {
      st = lstatSync(file)
    } catch {
      continue
    }
    if (st.nlink < 2) continue
    const twin = storeNameOf(file, storeRoot)
    let twinSame = false
    try {
      twinSame = twin !== undefined && statSync(twin).ino === st.ino
    } catch {
      twinSame = false
    }
    rmSync(file, { force: true })
    if (twinSame && twin) {
      await execa('chattr', ['+i', '--', twin], { stdin: 'ignore' })
      resealed.push(twin)
    }
  }
  rmSync(dir, { recursive: true, force: true })
  return resealed
}
