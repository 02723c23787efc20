// lib/pop-sync/pop-cursor.ts: the one writer of a POP's feed cursor and followed core.
import { join } from 'node:path'
import { readFileSync } from 'node:fs'
import t from 'tap'
import fg from 'fast-glob'
import { openDb } from '../../../lib/db/open.js'
import { PopCursor } from '../../../lib/pop-sync/pop-cursor.js'

t.test('move, move within a transaction, follow, re-baseline', async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const c = new PopCursor(db)
  t.equal(c.token(), null)
  t.same(c.core(), { storeId: null, generation: null })
  c.follow('s1', 1)
  c.follow('s2', 9) // only the first one counts
  t.same(c.core(), { storeId: 's1', generation: 1 })
  c.moveTo({ created_at: 10, seq: 1 }, 'a'.repeat(64))
  t.same(c.position(), { created_at: 10, seq: 1 })
  t.throws(
    () =>
      db.transaction(() => {
        c.moveWithin(db, { created_at: 20, seq: 2 }, 'b'.repeat(64))
        throw new Error('the index rows failed')
      })(),
    /index rows failed/,
  )
  t.same(c.position(), { created_at: 10, seq: 1 }, 'rolled back with the rows it covers')
  t.equal(c.chain(), 'a'.repeat(64), 'the chain value rolled back with it')
  db.transaction(() => c.moveWithin(db, { created_at: 20, seq: 2 }, 'b'.repeat(64)))()
  t.same(c.position(), { created_at: 20, seq: 2 })
  t.equal(c.chain(), 'b'.repeat(64), 'the chain value moves with the cursor')
  c.rebaseline('s3', 2)
  t.equal(c.token(), null, 'back to the start')
  t.equal(c.chain(), '0'.repeat(64), 'the chain back to its genesis')
  t.same(c.core(), { storeId: 's3', generation: 2 })
})

t.test('nothing else writes the cursor or the followed core', async (t) => {
  const root = new URL('../../../', import.meta.url)
  const files = await fg(
    ['lib/**/*.ts', 'scripts/**/*.ts', 'server/**/*.ts', 'pop-agent/**/*.ts'],
    {
      cwd: root.pathname,
    },
  )
  for (const f of files) {
    if (f === 'lib/pop-sync/pop-cursor.ts') continue
    const src = readFileSync(new URL(f, root), 'utf8')
    t.notMatch(src, /setMeta\([^)]*K_(CURSOR|STORE_ID|GENERATION|CHAIN|CHECKPOINT)/, f)
  }
})
