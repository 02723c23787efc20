// The one key/value store of a data folder (table `meta`): store identity and generation,
// a POP's cursor and replication state (lib/pop-sync/state.ts names its keys), the rsync log
// position. Absent is null; setting null deletes the key.
import type { Db } from './open.js'

export function getMeta(db: Db, key: string): string | null {
  const row = db.prepare('SELECT value FROM meta WHERE key = ?').get(key) as
    { value: string } | undefined
  return row?.value ?? null
}

export function setMeta(db: Db, key: string, value: string | null): void {
  if (value === null) db.prepare('DELETE FROM meta WHERE key = ?').run(key)
  else
    db.prepare(
      'INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value',
    ).run(key, value)
}
