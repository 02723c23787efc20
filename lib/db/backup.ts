// Online backup of meta.db through SQLite's backup API (better-sqlite3 `db.backup()`):
// consistent while the core keeps writing, unlike copying a live WAL database file.
import { existsSync } from 'node:fs'
import { claError } from '../errors.js'
import type { Db } from './open.js'

export async function backupDb(db: Db, destination: string): Promise<{ pages: number }> {
  if (existsSync(destination)) {
    throw claError('CLA_ERR_EXISTS', `${destination} exists; a backup never overwrites a file`)
  }
  const r = await db.backup(destination)
  return { pages: r.totalPages }
}
