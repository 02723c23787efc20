// Schema migrations by PRAGMA user_version: a database made by an older build is brought
// up to date on open, keeping its rows; a newer one is refused.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { openDb, SCHEMA_VERSION } from '../../../lib/db/open.js'

const schema1 = readFileSync(new URL('../../../lib/db/schema.sql', import.meta.url), 'utf8')

t.test('a version-1 database gains admin_sessions.last_seen_at and keeps its rows', async (t) => {
  const file = join(t.testdir({}), 'meta.db')
  const old = new Database(file)
  old.exec(schema1)
  old.pragma('user_version = 1')
  old
    .prepare('INSERT INTO humans (id, name, webauthn_user_id, created_at) VALUES (?, ?, ?, ?)')
    .run('hum_a', 'Ada', 'u1', 1)
  old
    .prepare(
      'INSERT INTO admin_sessions (id_hash, human_id, created_at, expires_at) VALUES (?, ?, ?, ?)',
    )
    .run('h1', 'hum_a', 1, 2)
  old.close()

  const db = openDb(file)
  t.teardown(() => db.close())
  t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
  t.ok(SCHEMA_VERSION >= 2)
  t.same(db.prepare('SELECT id_hash, last_seen_at FROM admin_sessions').all(), [
    { id_hash: 'h1', last_seen_at: null },
  ])
})

t.test('a database newer than this build is refused', async (t) => {
  const file = join(t.testdir({}), 'meta.db')
  const db = new Database(file)
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
  db.close()
  t.throws(() => openDb(file), { code: 'CLA_ERR_INVALID_OPTION', message: /newer than this build/ })
})
