// The token routes' decisions (lib/auth/token-grant.ts): issue, rotate, refuse a reuse,
// each with its pop.token audit row.
import { join } from 'node:path'
import t from 'tap'
import { openDb } from '../../../lib/db/open.js'
import { listEvents } from '../../../lib/audit/log.js'
import { grantTokens, refreshTokens } from '../../../lib/auth/token-grant.js'
import { verifyAccessToken } from '../../../lib/auth/tokens.js'

t.test('grant, refresh, and a reused refresh token refused with its chain', async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const secret = Buffer.alloc(32, 7)
  const g = { popId: 'pop-a', fingerprint: 'fp1', ip: '::ffff:127.0.0.1', nowSec: 1000, secret }
  const first = grantTokens(db, g)
  t.match(first, { token_type: 'Bearer', expires_in: 300, now: 1000 })
  t.match(
    verifyAccessToken([secret], first.access_token, {
      popId: 'pop-a',
      fingerprint: 'fp1',
      nowSec: 1001,
    }),
    {
      pop: 'pop-a',
    },
  )
  const next = refreshTokens(db, first.refresh_token, { ...g, nowSec: 1100 })
  t.not(next.refresh_token, first.refresh_token, 'the refresh token rotates')
  t.throws(() => refreshTokens(db, first.refresh_token, { ...g, nowSec: 1200 }), {
    code: 'CLA_ERR_AUTH_TOKEN',
  })
  t.throws(
    () => refreshTokens(db, next.refresh_token, { ...g, nowSec: 1300 }),
    'the chain is revoked',
  )
  const rows = listEvents(db, { order: 'asc' }).filter((e) => e.kind === 'pop.token')
  t.same(rows.map((e) => [e.outcome, e.reason, e.actor, e.ip, e.fingerprint]).slice(0, 3), [
    ['ok', 'token_issued', 'pop-a', '127.0.0.1', 'fp1'],
    ['ok', 'token_refreshed', 'pop-a', '127.0.0.1', 'fp1'],
    ['refused', 'refresh_reused', 'pop-a', '127.0.0.1', 'fp1'],
  ])
})
