// Durable file operations of the store, each a small step whose order matters for crash
// safety: write a temp name, fsync it, rename or link it into place (never over an
// existing name), fsync the folder. Plus a bounded parallel map for fsync fan-out.
import {
  closeSync,
  constants as fsConstants,
  fstatSync,
  fsync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  writeFileSync,
  writeSync,
  type BigIntStats,
} from 'node:fs'
import { join } from 'node:path'
import { claError } from '../errors.js'

export function writeFileDurable(file: string, data: Buffer | string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`
  const fd = openSync(tmp, 'w', mode)
  try {
    writeFileSync(fd, data)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
  renameSync(tmp, file)
  fsyncDirSync(join(file, '..'))
}

export function fsyncDirSync(dir: string): void {
  const fd = openSync(dir, 'r')
  try {
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

export function fsyncFd(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())))
}

export async function fsyncDir(dir: string): Promise<void> {
  const fd = openSync(dir, 'r')
  try {
    await fsyncFd(fd)
  } finally {
    closeSync(fd)
  }
}

export function writeAllSync(fd: number, buf: Buffer): void {
  let off = 0
  while (off < buf.length) off += writeSync(fd, buf, off, buf.length - off)
}

/** Runs `fn` over `items` with at most `limit` in flight. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (x: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out = new Array<R>(items.length)
  let next = 0
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++
      out[i] = await fn(items[i]!, i)
    }
  })
  await Promise.all(workers)
  return out
}

/**
 * Reads a file expected to hold `size` bytes, at most one byte more: the caller compares the
 * length (a longer file shows without an fstat; a hot loop over 100,000 staged files saves
 * the fstat and readFileSync's own). Open, read, close, on the calling thread. A symlink is
 * refused (ELOOP), a folder fails its read (EISDIR), and O_NONBLOCK keeps a FIFO from
 * blocking (it reads short). The buffer is its own, not a slice of Node's shared pool.
 */
export function readExpectedSync(file: string, size: number): Buffer {
  const buf = Buffer.allocUnsafeSlow(size + 1)
  const fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK)
  let got = 0
  try {
    for (;;) {
      const n = readSync(fd, buf, got, size + 1 - got, got)
      if (n === 0) break
      got += n
      if (got > size) break
    }
  } finally {
    closeSync(fd)
  }
  return buf.subarray(0, got)
}

/** Reads a staged file; a symlink or anything but a regular file is refused (ELOOP/EISDIR). */
export function readRegularFileSync(file: string): { buf: Buffer; st: BigIntStats } {
  const fd = openSync(file, fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW)
  try {
    const st = fstatSync(fd, { bigint: true })
    if (!st.isFile())
      throw Object.assign(new Error(`${file} is not a regular file`), { code: 'EISDIR' })
    return { buf: readFileSync(fd), st }
  } finally {
    closeSync(fd)
  }
}

export function linkNoClobber(from: string, to: string): void {
  try {
    linkSync(from, to)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') {
      throw claError('CLA_ERR_EXISTS', `${to} exists; nothing is ever overwritten`, {
        cause: err,
        details: { path: to },
      })
    }
    throw err
  }
}
