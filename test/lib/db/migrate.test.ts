// Schema migrations by PRAGMA user_version: a database made by an older build is brought
// up to date on open, keeping its rows; a newer one is refused.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { migrate, openDb, SCHEMA_VERSION } from '../../../lib/db/open.js'

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

t.test(
  'migration 7 rebuilds customers (unplaced level 0) keeping rows and references',
  async (t) => {
    const file = join(t.testdir({}), 'meta.db')
    const old = new Database(file)
    old.pragma('foreign_keys = ON')
    old.exec(schema1)
    old.pragma('user_version = 1')
    migrate(old, 6)
    t.equal(old.pragma('user_version', { simple: true }), 6)
    const cus = old.prepare(
      'INSERT INTO customers (id, parent_id, level, email, bill_to_parent, paddle_id, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 1, 2)',
    )
    cus.run('cus_msp', null, 1, 'msp@example.com', 0, 'ctm_msp')
    cus.run('cus_acme', 'cus_msp', 2, 'acme@example.com', 0, 'ctm_acme')
    cus.run('cus_fin', 'cus_acme', 3, 'acme@example.com', 1, null)
    old
      .prepare('INSERT INTO vaults (id, customer_id, name, created_at) VALUES (?, ?, ?, 1)')
      .run('vlt_1', 'cus_fin', 'finance')
    old
      .prepare('INSERT INTO humans (id, name, webauthn_user_id, created_at) VALUES (?, ?, ?, ?)')
      .run('hum_a', 'Ada', 'u1', 1)
    old
      .prepare(
        "INSERT INTO role_assignments (human_id, role_id, customer_id, created_at) VALUES ('hum_a', 'operator', 'cus_msp', 1)",
      )
      .run()
    const before = old.prepare('SELECT * FROM customers ORDER BY id').all()
    t.throws(
      () => cus.run('cus_x', null, 0, 'x@example.com', 0, null),
      /CHECK constraint failed/,
      'no level 0 before',
    )
    old.close()

    const db = openDb(file)
    t.teardown(() => db.close())
    t.equal(db.pragma('user_version', { simple: true }), SCHEMA_VERSION)
    t.equal(db.pragma('foreign_keys', { simple: true }), 1, 'foreign keys on again')
    t.same(
      db.prepare('SELECT * FROM customers ORDER BY id').all(),
      before,
      'rows kept as they were',
    )
    t.same(db.pragma('foreign_key_check'), [])
    t.same(db.pragma('integrity_check', { simple: true }), 'ok')
    // references into the rebuilt table still hold: a vault of an unknown customer is refused
    t.throws(
      () =>
        db
          .prepare(
            "INSERT INTO vaults (id, customer_id, name, created_at) VALUES ('v2', 'cus_no', 'x', 1)",
          )
          .run(),
      /FOREIGN KEY constraint failed/,
    )
    t.throws(() => db.prepare("DELETE FROM customers WHERE id = 'cus_fin'").run(), /FOREIGN KEY/)
    const ins = db.prepare(
      'INSERT INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES (?, ?, ?, ?, 1, 1)',
    )
    ins.run('cus_direct', null, 0, 'direct@example.com')
    t.throws(
      () => ins.run('cus_under', 'cus_direct', 1, 'u@example.com'),
      /unplaced customer has no children/,
    )
    t.throws(() => ins.run('cus_bad', null, 2, 'b@example.com'), /CHECK constraint failed/)
    t.throws(() => ins.run('cus_dept4', 'cus_fin', 4, 'd@example.com'), /CHECK constraint failed/)
    t.throws(
      () =>
        db.prepare("UPDATE customers SET level = 0, parent_id = NULL WHERE id = 'cus_acme'").run(),
      /level cannot change/,
      'a placed customer is never unplaced again',
    )
    db.prepare(
      "UPDATE customers SET parent_id = 'cus_msp', level = 2 WHERE id = 'cus_direct'",
    ).run()
    t.equal(
      db.prepare("SELECT level FROM customers WHERE id = 'cus_direct'").pluck().get(),
      2,
      'filed',
    )
    t.throws(
      () =>
        db
          .prepare("UPDATE customers SET parent_id = NULL, level = 1 WHERE id = 'cus_direct'")
          .run(),
      /level cannot change/,
    )
  },
)

t.test('a database newer than this build is refused', async (t) => {
  const file = join(t.testdir({}), 'meta.db')
  const db = new Database(file)
  db.pragma(`user_version = ${SCHEMA_VERSION + 1}`)
  db.close()
  t.throws(() => openDb(file), { code: 'CLA_ERR_INVALID_OPTION', message: /newer than this build/ })
})
