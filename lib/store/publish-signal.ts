// "New blobs are published": the store's own signal, raised right after each SQLite commit
// that published rows (a put group, an ingest, a tree ingest, a recovery that publishes).
//
//  - In this process: listeners are called synchronously with the rows (a POP's lookup
//    cache drops exactly the P0s that changed; the core's feed long-poll wakes its waiters).
//  - To other processes (the core's POP API runs beside `core serve`, which writes): a
//    core store rewrites the hint file {data}/run/published in place with the newest seq.
//    The file is a wake-up, never a source of truth: a reader that wakes reads the index.
//    Watching it (inotify through fs.watch, {@link watchPublished}) costs the reader no
//    polling; writing it costs the writer one pwrite per commit group, no fsync.
import { closeSync, mkdirSync, openSync, watch, writeSync, type FSWatcher } from 'node:fs'
import { dirname, basename } from 'node:path'
import { dataLayout, PRIVATE_DIR_MODE, PRIVATE_FILE_MODE } from '../db/data-dir.js'
import type { BlobInfo } from './blob-index.js'

/** Told of the rows a commit just published, in seq order; must not throw (a throw is reported and dropped). */
export type PublishListener = (infos: readonly BlobInfo[]) => void

/** Width of the hint file's content: a zero-padded seq, rewritten at offset 0. */
const HINT_WIDTH = 20

/** The hint file other processes watch: {data}/run/published. */
export function publishHintPath(dataDir: string): string {
  return dataLayout(dataDir).publishHint
}

/**
 * The store's publish signal: in-process listeners, and the hint file when `hintFile` is
 * given (core stores). Owned by the store (lib/store/context.ts); raised by batch.ts and
 * rebuild.ts after their commits.
 */
export class PublishSignal {
  private readonly listeners = new Set<PublishListener>()
  private readonly hintFile: string | null
  private readonly warn: (message: string) => void
  private fd: number | null = null
  private hintFailing = false

  constructor(opts: { hintFile: string | null; warn: (message: string) => void }) {
    this.hintFile = opts.hintFile
    this.warn = opts.warn
  }

  /** Adds a listener; returns its removal. */
  on(listener: PublishListener): () => void {
    this.listeners.add(listener)
    return () => {
      this.listeners.delete(listener)
    }
  }

  /** Raised after a commit: listeners first, then the hint file. Never throws. */
  emit(infos: readonly BlobInfo[]): void {
    if (infos.length === 0) return
    for (const l of [...this.listeners]) {
      try {
        l(infos)
      } catch (err) {
        this.warn(`a publish listener failed: ${(err as Error).message}`)
      }
    }
    this.hint(infos[infos.length - 1]!.seq)
  }

  private hint(seq: number): void {
    if (this.hintFile === null) return
    try {
      if (this.fd === null) {
        mkdirSync(dirname(this.hintFile), { recursive: true, mode: PRIVATE_DIR_MODE })
        this.fd = openSync(this.hintFile, 'w', PRIVATE_FILE_MODE)
      }
      writeSync(this.fd, String(seq).padStart(HINT_WIDTH, '0'), 0)
      this.hintFailing = false
    } catch (err) {
      // the long-poll still answers at its timeout and the hourly pull still runs: say so
      // once per failing stretch, never fail a write for a wake-up hint, and open the file
      // again at the next commit (a transient EMFILE, a folder made again)
      if (this.fd !== null) {
        try {
          closeSync(this.fd)
        } catch {
          // already gone
        }
        this.fd = null
      }
      if (!this.hintFailing)
        this.warn(
          `cannot write the publish hint ${this.hintFile} (${(err as Error).message}); POPs learn of new blobs at their long-poll timeout until it works again`,
        )
      this.hintFailing = true
    }
  }

  /** Closes the hint file; listeners are dropped. */
  close(): void {
    this.listeners.clear()
    if (this.fd !== null) closeSync(this.fd)
    this.fd = null
  }
}

/** A watch of the publish hint file ({@link watchPublished}). */
export interface PublishWatch {
  /** Stops watching. */
  close(): void
}

/**
 * Calls `onHint` when a store writer in another process (or this one) publishes blobs to the
 * store of `dataDir`: an inotify watch on {data}/run/, filtered to the hint file. Events
 * coalesce; the caller reads the index to learn what is new. Creates {data}/run when missing;
 * a watch that fails (the folder removed) is made again a second later, with one wake-up.
 */
export function watchPublished(dataDir: string, onHint: () => void): PublishWatch {
  const file = publishHintPath(dataDir)
  const dir = dirname(file)
  const name = basename(file)
  let w: FSWatcher | null = null
  let closed = false
  let retry: NodeJS.Timeout | null = null
  const start = (): void => {
    try {
      mkdirSync(dir, { recursive: true, mode: PRIVATE_DIR_MODE })
      w = watch(dir, { persistent: false }, (_event, f) => {
        if (f === null || f === name) onHint()
      })
      // the folder removed or made again: watch anew (a wake-up then, in case one was lost)
      w.on('error', () => again())
    } catch {
      again()
    }
  }
  const again = (): void => {
    w?.close()
    w = null
    if (closed || retry) return
    retry = setTimeout(() => {
      retry = null
      if (closed) return
      start()
      onHint()
    }, 1000)
    retry.unref()
  }
  start()
  return {
    close: () => {
      closed = true
      if (retry) clearTimeout(retry)
      w?.close()
    },
  }
}
