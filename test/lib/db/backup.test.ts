import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import { backupDb } from '../../../lib/db/backup.js'
import { isClavitorError } from '../../../lib/errors.js'

// the CLI (`clavitor core backup`): test/integration/core-backup-cli.test.ts
t.test('online backup is a consistent, openable copy and never overwrites', async (t) => {
  const dir = t.testdir()
  const db = openDb(join(dir, 'meta.db'))
  t.teardown(() => db.close())
  db.prepare("INSERT INTO meta (key, value) VALUES ('k', 'v1')").run()
  const out = join(dir, 'backup.db')
  const r = await backupDb(db, out)
  t.ok(r.pages > 0)
  db.prepare("UPDATE meta SET value = 'v2' WHERE key = 'k'").run()
  const copy = openDb(out, { readonly: true })
  t.equal(
    copy.prepare("SELECT value FROM meta WHERE key = 'k'").pluck().get(),
    'v1',
    'state at backup time',
  )
  t.equal(
    copy.pragma('user_version', { simple: true }),
    db.pragma('user_version', { simple: true }),
  )
  copy.close()
  const err = await backupDb(db, out).then(
    () => null,
    (e: unknown) => e,
  )
  t.ok(isClavitorError(err, 'CLA_ERR_EXISTS'), 'an existing file is never overwritten')
})
