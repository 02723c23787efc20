// Is there room to write in the data folder? statfs(2) of its filesystem: free bytes and
// free inodes against a floor, plus the last time a write failed for want of space (a
// disk can be "full" by quota or reserved blocks while statfs still shows bytes free).
// /healthz answers from this, so a load balancer stops sending writes to a full core.
import { statfsSync } from 'node:fs'

/** Whether the data folder has room to write: what /healthz reports under `storage`. */
export interface StorageHealth {
  /** True when status is 'ok'. */
  ok: boolean
  /** 'ok', or why not: 'low_space', 'low_inodes', 'write_failed' (a recent ENOSPC). */
  status: 'ok' | 'low_space' | 'low_inodes' | 'write_failed'
  /** Bytes free to an unprivileged writer (statfs bavail × bsize). */
  free_bytes: number
  /** Free inodes; Number.MAX_SAFE_INTEGER on a filesystem without an inode table (btrfs). */
  free_inodes: number
  /** The floor of free bytes below which the core is unhealthy. */
  min_free_bytes: number
  /** ms epoch of the last write refused for want of space, or null. */
  last_full_at: number | null
}

/** When the data folder counts as full (StorageMonitor); every field has a default. */
export interface StorageHealthOptions {
  /** Below this many free bytes the core is unhealthy. Default 64 MiB. */
  minFreeBytes?: number
  /** Below this many free inodes likewise. Default 1,000. */
  minFreeInodes?: number
  /** A write refused for want of space keeps the core unhealthy this long, ms. Default 60,000. */
  fullHoldMs?: number
}

/** One per data folder: checks on demand; the store says when a write last found the disk full. */
export class StorageMonitor {
  private readonly minFreeBytes: number
  private readonly minFreeInodes: number
  private readonly fullHoldMs: number

  constructor(
    readonly dir: string,
    opts: StorageHealthOptions = {},
  ) {
    this.minFreeBytes = opts.minFreeBytes ?? 64 * 1024 * 1024
    this.minFreeInodes = opts.minFreeInodes ?? 1000
    this.fullHoldMs = opts.fullHoldMs ?? 60_000
  }

  /** `lastFullAt`: ms epoch of the last write refused for want of space (BlobStore.lastFullAt). */
  check(lastFullAt: number | null, nowMs = Date.now()): StorageHealth {
    const s = statfsSync(this.dir)
    const free = s.bavail * s.bsize
    // some filesystems (btrfs) have no inode table and report 0 of 0: not a shortage
    const inodes = s.files > 0 ? s.ffree : Number.MAX_SAFE_INTEGER
    const recent = lastFullAt !== null && nowMs - lastFullAt < this.fullHoldMs
    const status: StorageHealth['status'] =
      free < this.minFreeBytes
        ? 'low_space'
        : inodes < this.minFreeInodes
          ? 'low_inodes'
          : recent
            ? 'write_failed'
            : 'ok'
    return {
      ok: status === 'ok',
      status,
      free_bytes: free,
      free_inodes: inodes,
      min_free_bytes: this.minFreeBytes,
      last_full_at: lastFullAt,
    }
  }
}
