// Shared set-up for the sync benchmarks: a dedicated ext4 filesystem (loop device) for the
// work folder, and an rsync daemon over the core's store on loopback (the POP's production
// transport). A benchmark helper, not part of the package.
//
// Why a loop filesystem: this VM's disk is ext4 mounted with `discard`; after anyone deletes
// a tree of 10,000+ files, file creation on it is slow for a minute or more, and plain rsync
// then swings 1,100–16,000 files/s between runs (docs/performance.md). A fresh ext4 of our
// own (no discard, inode tables initialised up front) is removed with one umount.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { renderRsyncdConfig } from '../../lib/core-sync/rsyncd-config.js'

export interface WorkFs {
  dir: string
  kind: 'loop' | 'tmp'
  close(): void
}

function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** A work folder on a fresh loop-mounted ext4 of `sizeGiB` (root), else under tmpdir. */
export function makeWorkFs(
  want: 'loop' | 'tmp',
  sizeGiB: number,
  log: (s: string) => void,
): WorkFs {
  const base = mkdtempSync(join(tmpdir(), 'clavitor-bench-'))
  const plain: WorkFs = {
    dir: base,
    kind: 'tmp',
    close: () => {
      try {
        execFileSync('chattr', ['-R', '-i', '-a', base], { stdio: 'ignore' })
      } catch {
        // some entries take no attributes (sockets); what was sealed is unsealed anyway
      }
      rmSync(base, { recursive: true, force: true })
    },
  }
  if (want === 'tmp') return plain
  if (process.getuid?.() !== 0 || !have('mkfs.ext4') || !have('mount')) {
    log('no loop filesystem (needs root, mkfs.ext4, mount): working under tmpdir')
    return plain
  }
  const img = join(base, 'fs.img')
  const mnt = join(base, 'mnt')
  mkdirSync(mnt)
  try {
    execFileSync('truncate', ['-s', `${Math.ceil(sizeGiB)}G`, img])
    // -i 4096: one inode per 4 KiB (every blob is a file and, here, a folder of its own);
    // tables and journal written now, so no lazy-init thread writes in the background
    execFileSync(
      'mkfs.ext4',
      ['-q', '-F', '-i', '4096', '-E', 'lazy_itable_init=0,lazy_journal_init=0', img],
      { stdio: 'ignore' },
    )
    execFileSync('mount', ['-o', 'loop', img, mnt])
  } catch (err) {
    log(`loop filesystem failed (${(err as Error).message.split('\n')[0]}): working under tmpdir`)
    rmSync(img, { force: true })
    return plain
  }
  log(`work folder on a fresh ${Math.ceil(sizeGiB)} GiB loop ext4 at ${mnt}`)
  return {
    dir: mnt,
    kind: 'loop',
    close: () => {
      // no chattr -R pass: sealed files go with the filesystem image
      // servers stopped a moment ago may still hold files open: retry, then detach lazily
      for (let i = 0; ; i++) {
        try {
          execFileSync('umount', [mnt], { stdio: 'ignore' })
          break
        } catch {
          if (i === 20) {
            execFileSync('umount', ['-l', mnt])
            break
          }
          execFileSync('sleep', ['0.25'])
        }
      }
      rmSync(base, { recursive: true, force: true })
    },
  }
}

export async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise((r) => srv.close(r))
  return port
}

export interface Rsyncd {
  /** rsync:// URL of the store module. */
  url: string
  /** user + system CPU seconds of the daemon and the per-connection children it reaped. */
  cpu(): number
  close(): void
}

/** The generated rsyncd.conf (lib/core-sync/rsyncd-config.ts) over `storeRoot`, on 127.0.0.1. */
export async function startRsyncd(storeRoot: string, dir: string): Promise<Rsyncd> {
  const port = await freePort()
  const root = process.getuid?.() === 0
  mkdirSync(dir, { recursive: true })
  const conf = join(dir, 'rsyncd.conf')
  const text = renderRsyncdConfig({
    storeRoot,
    module: 'clavitor-store',
    address: '127.0.0.1',
    port,
    pidFile: join(dir, 'rsyncd.pid'),
    logFile: join(dir, 'rsyncd.log'),
    uid: 'nobody',
    gid: 'nogroup',
    useChroot: root,
    lockFile: join(dir, 'rsyncd.lock'),
    maxConnections: 20,
  })
  writeFileSync(conf, root ? text : text.replace(/^\s*(uid|gid) = .*\n/gm, ''))
  const child: ChildProcess = spawn('rsync', ['--daemon', '--no-detach', `--config=${conf}`], {
    stdio: 'ignore',
  })
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((r) => {
      const c = connect({ host: '127.0.0.1', port }, () => {
        c.destroy()
        r(true)
      })
      c.once('error', () => r(false))
    })
    if (ok) break
    if (i > 100 || child.exitCode !== null)
      throw new Error(`rsync --daemon did not start (${conf})`)
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    url: `rsync://127.0.0.1:${port}/clavitor-store/`,
    cpu: () => procCpu(child.pid!),
    close: () => {
      child.kill('SIGTERM')
    },
  }
}

/** utime + stime + cutime + cstime of a live process, in seconds (Linux /proc). */
export function procCpu(pid: number): number {
  const f = join('/proc', String(pid), 'stat')
  if (!existsSync(f)) return 0
  const s = readFileSync(f, 'utf8')
  const v = s.slice(s.lastIndexOf(')') + 2).split(' ')
  const tick = 100 // USER_HZ on Linux
  return (Number(v[11]) + Number(v[12]) + Number(v[13]) + Number(v[14])) / tick
}

/** This process's CPU seconds: its own plus its reaped children's (rsync clients, chattr). */
export function selfCpu(): { self: number; children: number } {
  const s = readFileSync('/proc/self/stat', 'utf8')
  const v = s.slice(s.lastIndexOf(')') + 2).split(' ')
  return {
    self: (Number(v[11]) + Number(v[12])) / 100,
    children: (Number(v[13]) + Number(v[14])) / 100,
  }
}

/**
 * Resolves once an HTTP server answers on 127.0.0.1:`port` (any status); fails after `ms`
 * (2 minutes), or as soon as `server` (the process that should listen) has exited.
 */
export async function waitPort(
  port: number,
  ms = 120_000,
  server?: { exitCode: number | null; signalCode: NodeJS.Signals | null },
): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (server && (server.exitCode !== null || server.signalCode !== null))
      throw new Error(`the server for port ${port} exited before it listened`)
    try {
      const r = await fetch(`http://127.0.0.1:${port}/`)
      await r.arrayBuffer()
      return
    } catch {
      await new Promise((r) => setTimeout(r, 100))
    }
  }
  throw new Error(`nothing listens on ${port}`)
}
