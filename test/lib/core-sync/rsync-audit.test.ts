// The rsync channel in the audit trail (lib/core-sync/rsync-audit.ts): one pop.rsync row per
// session from the daemon's own log, per failed login, per refused address and pass;
// never a row per file, never a line twice (the position is kept with the rows).
// The log lines are the ones rsyncd 3.x writes with our `log format`.
import t from 'tap'
import { appendFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import { addPop } from '../../../lib/auth/pops.js'
import { appendEvent, listEvents, verifyChain } from '../../../lib/audit/log.js'
import { issueRsyncSecret } from '../../../lib/core-sync/rsync-auth.js'
import {
  auditRsyncLog,
  prepareRsyncdLogFile,
  RSYNCD_XFER_LOG_FORMAT,
} from '../../../lib/core-sync/rsync-audit.js'
import { renderRsyncdConfig } from '../../../lib/core-sync/rsyncd-config.js'
import { makePki } from '../../fixtures/pki.js'
import { tempDir } from '../../fixtures/sync.js'

const root = tempDir(t, 'cla-rsync-audit-')
const pki = await makePki(root, ['ams1'])
const db = openDb(join(pki.coreDir, 'meta.db'))
t.teardown(() => db.close())
addPop(db, { id: 'ams1', certPem: pki.pops.ams1!.certPem, allowlist: ['192.0.2.10/32'] })
issueRsyncSecret(db, pki.coreDir, 'ams1')
const feed = appendEvent(db, {
  kind: 'pop.request',
  actor: 'ams1',
  outcome: 'allowed',
  route: 'GET /pop/v1/feed',
})

const ts = '2026/12/02 18:04:15'
const session = (pid: number, user: string, ip: string, sizes: number[], end = true) =>
  [
    `${ts} [${pid}] connect from UNKNOWN (${ip})`,
    `${ts} [${pid}] rsync allowed access on module clavitor-store from UNKNOWN (${ip})`,
    `${ts} [${pid}] rsync on clavitor-store/ from ${user}@UNKNOWN (${ip})`,
    `${ts} [${pid}] building file list`,
    ...sizes.map(
      (n, i) => `${ts} [${pid}] clavitor-xfer send ${n} ab/${'ab'.repeat(16)}/f${i}.cla`,
    ),
    ...(end
      ? [
          `${ts} [${pid}] sent ${sizes.reduce((a, b) => a + b, 300)} bytes  received 90 bytes  total size 9000`,
        ]
      : []),
  ].join('\n') + '\n'
const rows = () => listEvents(db, { kind: 'pop.rsync', order: 'asc', limit: 1000 })

t.test('the config logs each file in our format', async (t) => {
  const text = renderRsyncdConfig({ storeRoot: '/s', logFile: '/l/rsyncd.log' })
  t.match(text, /transfer logging = yes\n/)
  t.match(text, `log format = ${RSYNCD_XFER_LOG_FORMAT}\n`)
})

t.test('a missing log: nothing to do', async (t) => {
  t.same(auditRsyncLog(db, join(root, 'nope.log')), {
    lines: 0,
    sessions: 0,
    authFailures: 0,
    denied: 0,
    open: 0,
  })
})

const log = join(root, 'rsyncd.log')

t.test('prepareRsyncdLogFile: 0600, and an existing log is left alone', async (t) => {
  prepareRsyncdLogFile(log)
  t.equal(statSync(log).mode & 0o777, 0o600)
  appendFileSync(log, `${ts} [1] rsyncd version 3.5.0 starting, listening on port 873\n`)
  prepareRsyncdLogFile(log)
  t.ok(statSync(log).size > 0, 'not truncated')
})

t.test('sessions, failed logins and refused addresses', async (t) => {
  appendFileSync(
    log,
    session(101, 'clavitor-pop-ams1', '192.0.2.10', [1000, 2000, 3000]) +
      `${ts} [102] connect from UNKNOWN (192.0.2.10)\n` +
      `${ts} [102] auth failed on module clavitor-store from UNKNOWN (192.0.2.10) for clavitor-pop-ams1: password mismatch\n` +
      `${ts} [103] rsync denied on module clavitor-store from UNKNOWN (203.0.113.9)\n` +
      `${ts} [104] rsync denied on module clavitor-store from UNKNOWN (203.0.113.9)\n` +
      session(105, 'clavitor-pop-gone', '192.0.2.11', [10]) +
      session(106, 'clavitor-pop-ams1', '192.0.2.10', [500], false),
  )
  const r = auditRsyncLog(db, log)
  t.match(r, { sessions: 2, authFailures: 1, denied: 2, open: 1 })
  const got = rows()
  t.equal(got.length, 4, 'two sessions, one failed login, one summary of refusals')
  t.match(got[0], { actor: 'ams1', outcome: 'allowed', ip: '192.0.2.10' })
  t.match(JSON.parse(got[0]!.data!), { pid: 101, files: 3, bytes: 6000, feed_event: feed.id })
  t.match(got[1], { actor: 'ams1', outcome: 'refused', reason: 'auth_failed', ip: '192.0.2.10' })
  t.match(got[2], { actor: 'unknown', outcome: 'allowed', ip: '192.0.2.11' })
  t.match(JSON.parse(got[2]!.data!), { user: 'clavitor-pop-gone', files: 1, feed_event: null })
  t.match(got[3], {
    actor: 'unknown',
    outcome: 'refused',
    reason: 'host_denied',
    ip: '203.0.113.9',
  })
  t.match(JSON.parse(got[3]!.data!), { count: 2 })

  t.match(auditRsyncLog(db, log), { lines: 0, sessions: 0 }, 'a second pass audits nothing again')
  t.equal(rows().length, 4)

  // the open session ends later, half a line at a time
  appendFileSync(
    log,
    `${ts} [106] clavitor-xfer send 700 ab/x.cla\n${ts} [106] rsync error: timeout`,
  )
  t.match(auditRsyncLog(db, log), { sessions: 0, open: 1 }, 'a line being written waits')
  appendFileSync(log, ' in data send/receive (code 30)\n')
  t.match(auditRsyncLog(db, log), { sessions: 1, open: 0 })
  const last = rows().at(-1)!
  t.match(last, { actor: 'ams1', outcome: 'failed', reason: 'rsync_error' })
  t.match(JSON.parse(last.data!), { files: 2, bytes: 1200, error: /timeout/ })
  t.equal(verifyChain(db).ok, true, 'the chain holds')
})

t.test('a rotated log is read from its start', async (t) => {
  renameSync(log, `${log}.1`)
  writeFileSync(log, session(201, 'clavitor-pop-ams1', '192.0.2.10', [42]))
  const r = auditRsyncLog(db, log)
  t.match(r, { sessions: 1 })
  t.match(JSON.parse(rows().at(-1)!.data!), { pid: 201, files: 1, bytes: 42 })
})
