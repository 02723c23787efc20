// The write path of put(), group-committed: puts issued together wait for one group; under
// the writer lock each group gets its seq and created_at, is encoded + signed, written as
// temp files in {data}/staging (same filesystem, never +a), fsynced, linked into place
// (link never overwrites), its temp names unlinked, the p0 and shard folders fsynced
// (stage 1, writeBatch); then sealed (one chattr for files, one for new folders) and
// indexed in one SQLite transaction (stage 2), chained behind the previous group's stage 2
// so rows commit in seq order while the next group writes. A put resolves only after its
// row commits, with its caller's rows (PutOptions.inTransaction) in the same transaction.
import { randomBytes } from 'node:crypto'
import { closeSync, fchmodSync, openSync, rmSync, unlinkSync } from 'node:fs'
import { join } from 'node:path'
import { claError, isNoSpace, storageFullOr, type ClavitorError } from '../errors.js'
import type { BlobInfo } from './blob-index.js'
import { fileSha256 } from './chain.js'
import type { Db } from '../db/open.js'
import { insertPutRows, makeP0Dirs, sealBatch, syncDirs } from './batch.js'
import { checkOpen, exclusive, type PendingPut, type StoreContext } from './context.js'
import { fsyncFd, linkNoClobber, writeAllSync } from './durable.js'
import { blobFileName, encodeClaWithDigest } from './format.js'
import { BLOB_FILE_MODE } from './open.js'
import { shardOf, validateP0 } from './p0.js'
import { ensureWriter } from './rebuild.js'

/** Options of BlobStore.put. */
export interface PutOptions {
  /**
   * The caller's own rows, written in the transaction that indexes this blob (a savepoint of
   * its group's), so they and the blob become visible together or not at all. If it throws,
   * the put rejects with its error and the blob — a sealed file by then, WORM — stays indexed
   * but unpublished: never in the feed nor a P0's latest. Synchronous, like every
   * better-sqlite3 transaction.
   */
  inTransaction?: (info: BlobInfo, db: Db) => void
}

/** BlobStore.put: checks the put, then queues it for the next group. */
export function put(
  ctx: StoreContext,
  p0: string,
  payload: Buffer,
  opts: PutOptions = {},
): Promise<BlobInfo> {
  try {
    checkOpen(ctx)
    validateP0(p0)
    if (!Buffer.isBuffer(payload))
      throw claError('CLA_ERR_INVALID_INPUT', 'payload must be a Buffer')
    if (payload.length > ctx.maxPayloadBytes) {
      throw claError(
        'CLA_ERR_PAYLOAD_TOO_LARGE',
        `payload is ${payload.length} bytes; the limit is ${ctx.maxPayloadBytes}`,
        { details: { size: payload.length, limit: ctx.maxPayloadBytes } },
      )
    }
    if (!ctx.signing) {
      throw claError(
        'CLA_ERR_STORE_NO_SIGNING_KEY',
        'this store is a POP replica without a signing key; it only ingests',
      )
    }
  } catch (err) {
    return Promise.reject(err)
  }
  return new Promise<BlobInfo>((resolve, reject) => {
    ctx.pending.push({ p0, payload, inTransaction: opts.inTransaction, resolve, reject })
    scheduleFlush(ctx)
  })
}

function scheduleFlush(ctx: StoreContext): void {
  if (ctx.flushQueued) return
  ctx.flushQueued = true
  void exclusive(ctx, async () => {
    // Let puts issued in the same tick join this group.
    await new Promise((r) => setImmediate(r))
    ctx.flushQueued = false
    const batch = ctx.pending.splice(0, ctx.maxBatch)
    if (ctx.pending.length > 0) scheduleFlush(ctx)
    if (batch.length === 0) return
    let sealed: { done: Promise<Array<{ info: BlobInfo; error: unknown }>> }
    try {
      sealed = await writeBatch(ctx, batch)
    } catch (err) {
      const e = noSpace(ctx, err)
      for (const item of batch) item.reject(e)
      return
    }
    // Not awaited here: the next group writes while this one is sealed and indexed.
    sealed.done.then(
      (out) =>
        batch.forEach((item, i) => {
          const r = out[i]!
          if (r.error === undefined) item.resolve(r.info)
          else item.reject(r.error)
        }),
      (err: unknown) => {
        const e = noSpace(ctx, err)
        batch.forEach((item) => item.reject(e))
      },
    )
  })
}

/** A write the disk had no room for is CLA_ERR_STORAGE_FULL (retryable), and remembered. */
function noSpace(ctx: StoreContext, err: unknown): unknown {
  if (!isNoSpace(err)) return err
  ctx.lastFullAt = Date.now()
  return storageFullOr(err, 'the put')
}

function nextCreatedAt(ctx: StoreContext): number {
  const now = Math.floor(ctx.clock())
  ctx.lastCreatedAt = now > ctx.lastCreatedAt ? now : ctx.lastCreatedAt + 1
  return ctx.lastCreatedAt
}

/**
 * Stage 1 of a group (under the in-process mutex): assign seq/created_at, sign, write and
 * fsync the temp files, link them into place, fsync the folders. Returns stage 2 (seal
 * and index), chained behind the previous group's stage 2 so rows commit in seq order.
 */
async function writeBatch(
  ctx: StoreContext,
  batch: PendingPut[],
): Promise<{ done: Promise<Array<{ info: BlobInfo; error: unknown }>> }> {
  await ensureWriter(ctx)
  const key = ctx.signing!
  const items = batch.map((b) => {
    const seq = ++ctx.lastSeq
    const createdAt = nextCreatedAt(ctx)
    const name = blobFileName(createdAt, randomBytes(8).toString('hex'))
    const { bytes, sha256 } = encodeClaWithDigest({
      p0: b.p0,
      createdAt,
      seq,
      payload: b.payload,
      key,
    })
    const path = `${shardOf(b.p0)}/${b.p0}/${name}`
    // The index row from what was just encoded, field for field what infoOf(decodeCla(bytes))
    // gives (test/lib/store/store.test.ts checks they agree): size is the payload's length,
    // sha256 the payload's digest in the header, file_size the whole file.
    const info: BlobInfo = {
      seq,
      created_at: createdAt,
      p0: b.p0,
      path,
      size: b.payload.length,
      file_size: bytes.length,
      sha256,
      key_id: key.keyId,
      file_sha256: fileSha256(bytes),
    }
    return { info, bytes, tmp: join(ctx.paths.staging, `${name}.tmp`) }
  })
  let linked = false
  let newDirs: string[]
  try {
    // 1. temp files: written into the page cache, then fsynced in parallel
    const fds: number[] = []
    try {
      for (const it of items) {
        const fd = openSync(it.tmp, 'wx', BLOB_FILE_MODE)
        fds.push(fd)
        fchmodSync(fd, BLOB_FILE_MODE) // exact, whatever the umask (see publicDir in open.ts)
        writeAllSync(fd, it.bytes)
      }
      await Promise.all(fds.map((fd) => fsyncFd(fd)))
    } finally {
      for (const fd of fds) closeSync(fd)
    }
    // 2. p0 folders, links (never overwrite), temp names removed
    newDirs = makeP0Dirs(
      ctx,
      items.map((it) => it.info.p0),
    )
    linked = true
    for (const it of items) {
      linkNoClobber(it.tmp, join(ctx.root, it.info.path))
      unlinkSync(it.tmp)
    }
    // 3. folder fsyncs: every p0 folder touched, and shard folders that gained a p0 folder
    await syncDirs(
      ctx,
      items.map((it) => it.info.p0),
      newDirs,
    )
  } catch (err) {
    if (linked) ctx.recoverNeeded = true
    for (const it of items) rmSync(it.tmp, { force: true })
    throw err
  }
  // 4. seal, 5. index: in order behind earlier groups
  const infos = items.map((it) => it.info)
  const done = ctx.stage2.then(async () => {
    if (ctx.stage2Failure !== undefined) {
      throw claError(
        'CLA_ERR_INTERNAL',
        'an earlier group failed to index; the store recovers before its next write',
        {
          cause: ctx.stage2Failure,
        },
      )
    }
    let sealed: { sealed: boolean; error?: ClavitorError }
    let errors: unknown[]
    try {
      // every p0 folder the group touched, not only new ones: a folder a crash left without
      // +a is sealed by the next write into it (chattr +a again is harmless)
      sealed = await sealBatch(
        ctx,
        infos.map((i) => join(ctx.root, i.path)),
        [...new Set([...newDirs, ...infos.map((i) => join(ctx.root, shardOf(i.p0), i.p0))])],
      )
      errors = insertPutRows(
        ctx,
        infos,
        batch.map((b) => b.inTransaction),
        sealed,
      )
    } catch (err) {
      ctx.stage2Failure = err
      ctx.recoverNeeded = true
      throw err
    }
    if (sealed.error) throw sealed.error
    return infos.map((info, i) => ({ info, error: errors[i] }))
  })
  ctx.stage2 = done.catch(() => undefined)
  return { done }
}
