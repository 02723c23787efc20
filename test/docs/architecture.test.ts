// docs/architecture.md's "Where to change X" names files that exist: a newcomer who
// follows it lands in the right file, and a move that forgets the table fails here.
import t from 'tap'
import { existsSync, readFileSync } from 'node:fs'

const root = new URL('../../', import.meta.url)
const doc = readFileSync(new URL('docs/architecture.md', root), 'utf8')
const section = doc.split('## Where to change X')[1]?.split('\n## ')[0] ?? ''

t.test('every path in the table exists', async (t) => {
  const rows = section.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| ---'))
  t.ok(rows.length > 10, 'the table is there')
  const paths = rows.flatMap((r) =>
    [...(r.split('|')[2] ?? '').matchAll(/`([^`\s]+)`/g)]
      .map((m) => m[1]!)
      .filter((p) => /^(lib|server|pop-agent|scripts|docs|test)\//.test(p)),
  )
  t.ok(paths.length > 20, `${paths.length} paths named`)
  for (const p of paths) t.ok(existsSync(new URL(p, root)), p)
})
