// The audit kinds of lib/audit/kinds.ts and the table of docs/security.md say the same.
import t from 'tap'
import { readFileSync } from 'node:fs'
import { AUDIT_KINDS, isAuditKind } from '../../../lib/audit/kinds.js'

const doc = readFileSync(new URL('../../../docs/security.md', import.meta.url), 'utf8')
const section = doc.split('## What is audited and what is counted')[1]?.split('\n## ')[0] ?? ''

t.test('docs/security.md lists every audit kind', async (t) => {
  t.ok(section.length > 0, 'the section exists')
  const rows = section.split('\n').filter((l) => l.startsWith('| `'))
  const named = new Set(
    rows.flatMap((r) => [...r.split('|')[1]!.matchAll(/`([^`]+)`/g)].map((m) => m[1]!)),
  )
  t.same([...named].sort(), Object.keys(AUDIT_KINDS).sort(), 'the same kinds, no more, no less')
})

t.test('isAuditKind', async (t) => {
  t.ok(isAuditKind('pop.request'))
  t.notOk(isAuditKind('toString'), 'not inherited names')
  t.notOk(isAuditKind(undefined))
})
