// Clean-up of the store's staging folder {data}/staging: the temp files a dead writer left,
// and seal probes that got stuck. Run on open when no live writer holds the lock, and when
// a writer takes the lock (lib/store/rebuild.ts, ensureWriter).
import { readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { unsealTree } from './seal.js'

/** Empties the staging folder (temp files of a dead writer, a stuck seal probe). */
export async function cleanStaging(dir: string): Promise<number> {
  let names: string[]
  try {
    names = readdirSync(dir)
  } catch {
    return 0
  }
  let removed = 0
  for (const n of names) {
    const p = join(dir, n)
    // another process's seal probe may be in flight: leave fresh ones alone
    if (n.startsWith('.seal-probe-')) {
      try {
        if (Date.now() - statSync(p).mtimeMs < 60_000) continue
      } catch {
        continue
      }
    }
    removed++
    try {
      rmSync(p, { recursive: true, force: true })
    } catch {
      await unsealTree(p)
      rmSync(p, { recursive: true, force: true })
    }
  }
  return removed
}
