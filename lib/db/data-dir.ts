// The data folder ({data}) and who may read what is in it.
//
// `meta.db` holds API key hashes, refresh tokens, sessions and the whole billing mirror;
// the logs name POPs and addresses. They are ours alone: {data} is made 0700, meta.db
// (and SQLite's -wal and -shm, which take the database file's mode) 0600, whatever the
// process umask. The units also set `UMask=0077`, so anything else we create is private.
//
// The store is the exception, on purpose: the rsync daemon reads it as `nobody` inside a
// chroot of {data}/store (docs/operations.md), so its folders are 0755 and its blobs
// 0444, set explicitly (lib/store) rather than left to a umask that would hide them.
// The 0700 {data} above it still keeps other local users out; the chroot starts below it.
import {
  chmodSync,
  closeSync,
  existsSync,
  fchmodSync,
  mkdirSync,
  openSync,
  statSync,
} from 'node:fs'

export const PRIVATE_DIR_MODE = 0o700
export const PRIVATE_FILE_MODE = 0o600

/** Makes {data} (0700) if it does not exist; an existing folder keeps its mode (see doctor). */
export function ensureDataDir(dir: string): void {
  if (existsSync(dir)) return
  mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
  chmodSync(dir, PRIVATE_DIR_MODE) // mkdir's mode is masked by the umask; make it exact
}

/**
 * Creates `file` if missing, and sets it (and a SQLite database's -wal and -shm when they
 * exist) to 0600: before SQLite opens it, so its journal files are born 0600 too.
 */
export function makePrivateFile(file: string, opts: { sqlite?: boolean } = {}): void {
  const fd = openSync(file, 'a', PRIVATE_FILE_MODE)
  try {
    fchmodSync(fd, PRIVATE_FILE_MODE)
  } finally {
    closeSync(fd)
  }
  if (!opts.sqlite) return
  for (const side of [`${file}-wal`, `${file}-shm`]) {
    try {
      chmodSync(side, PRIVATE_FILE_MODE)
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
    }
  }
}

/** Group or other permission bits set on `path` (0 when private or missing). */
export function openBits(path: string): number {
  try {
    return statSync(path).mode & 0o077
  } catch {
    return 0
  }
}
