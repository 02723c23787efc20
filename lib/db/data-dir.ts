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
import { join } from 'node:path'

/**
 * Every path in a data folder, core or POP, in one place. The modules that own a part
 * keep their own accessors (storePaths, caPaths, popAuthPaths, tokenSecretPaths, the
 * rsync secrets, popPaths, dataPaths), each a view of this.
 *
 *   {data}/meta.db (+ -wal, -shm)   the metadata database, 0600
 *   {data}/store/<shard>/<p0>/…     sealed .cla blobs (lib/store)
 *   {data}/staging/                 the store's temp files (same filesystem)
 *   {data}/store.json, store.lock   store identity, writer lock
 *   {data}/keys/                    0700: signing key, trusted keys, POP token secret,
 *                                   rsyncd secrets, admin cookie key
 *   {data}/ca/                      the private CA and the POP API's TLS key (core)
 *   {data}/pop-auth/                a POP's key, CSR, certificate, CA, rsync password
 *   {data}/rsyncd/                  the rsync daemon's lock and log (core)
 *   {data}/sync-staging/, quarantine/  a POP's pull staging and refused files
 *   {data}/run/published            0700/0600: a core store's publish hint (newest seq),
 *                                   watched by the POP API's long-poll (lib/store/publish-signal.ts)
 */
export function dataLayout(dataDir: string) {
  const keys = join(dataDir, 'keys')
  const ca = join(dataDir, 'ca')
  const popAuth = join(dataDir, 'pop-auth')
  const rsyncd = join(dataDir, 'rsyncd')
  return {
    root: dataDir,
    db: join(dataDir, 'meta.db'),
    store: join(dataDir, 'store'),
    staging: join(dataDir, 'staging'),
    storeLock: join(dataDir, 'store.lock'),
    storeIdentity: join(dataDir, 'store.json'),
    keys: {
      dir: keys,
      signingKey: join(keys, 'signing.key'),
      signingPub: join(keys, 'signing.pub'),
      trusted: join(keys, 'trusted'),
      popToken: join(keys, 'pop-token.key'),
      popTokenPrevious: join(keys, 'pop-token.key.prev'),
      rsyncdSecrets: join(keys, 'rsyncd.secrets'),
      adminCookie: join(keys, 'admin-cookie.key'),
    },
    ca: {
      dir: ca,
      key: join(ca, 'ca.key'),
      cert: join(ca, 'ca.pem'),
      crl: join(ca, 'crl.pem'),
      config: join(ca, 'openssl.cnf'),
      index: join(ca, 'index.txt'),
      serial: join(ca, 'serial'),
      crlnumber: join(ca, 'crlnumber'),
      certs: join(ca, 'certs'),
      serverKey: join(ca, 'server.key'),
      serverCert: join(ca, 'server.pem'),
    },
    popAuth: {
      dir: popAuth,
      key: join(popAuth, 'key.pem'),
      csr: join(popAuth, 'csr.pem'),
      cert: join(popAuth, 'cert.pem'),
      ca: join(popAuth, 'ca.pem'),
      rsyncPassword: join(popAuth, 'rsync.password'),
    },
    rsyncd: { dir: rsyncd, lock: join(rsyncd, 'rsyncd.lock'), log: join(rsyncd, 'rsyncd.log') },
    syncStaging: join(dataDir, 'sync-staging'),
    quarantine: join(dataDir, 'quarantine'),
    publishHint: join(dataDir, 'run', 'published'),
  }
}

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
