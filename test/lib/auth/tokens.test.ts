// lib/auth/tokens.ts: access tokens, refresh-token chains, secret rotation.
import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import {
  issueAccessToken,
  issueRefreshToken,
  loadTokenSecrets,
  rotateRefreshToken,
  rotateTokenSecret,
  verifyAccessToken,
} from '../../../lib/auth/tokens.js'
import { reason } from '../../fixtures/reasons.js'

t.test('access tokens: 5 minutes, bound to the certificate, secret rotation', async (t) => {
  const dir = t.testdir()
  const [secret] = loadTokenSecrets(dir)
  const { token, expiresAt } = issueAccessToken(secret!, 'pop-a', 'fp1', 1000)
  t.equal(expiresAt, 1300)
  t.match(
    verifyAccessToken([secret!], token, { popId: 'pop-a', fingerprint: 'fp1', nowSec: 1299 }),
    { pop: 'pop-a', fp: 'fp1' },
  )
  t.equal(
    reason(() =>
      verifyAccessToken([secret!], token, { popId: 'pop-a', fingerprint: 'fp1', nowSec: 1300 }),
    ),
    'token_expired',
  )
  t.equal(
    reason(() =>
      verifyAccessToken([secret!], token, { popId: 'pop-a', fingerprint: 'fp2', nowSec: 1000 }),
    ),
    'token_wrong_cert',
  )
  t.equal(
    reason(() =>
      verifyAccessToken([secret!], token, { popId: 'pop-b', fingerprint: 'fp1', nowSec: 1000 }),
    ),
    'token_wrong_cert',
  )
  t.equal(
    reason(() =>
      verifyAccessToken([secret!], token + 'x', {
        popId: 'pop-a',
        fingerprint: 'fp1',
        nowSec: 1000,
      }),
    ),
    'token_invalid',
  )
  const forged = token.replace(
    /\.[^.]+\./,
    '.' + Buffer.from('{"pop":"pop-a","fp":"fp1","exp":9e9}').toString('base64url') + '.',
  )
  t.equal(
    reason(() =>
      verifyAccessToken([secret!], forged, { popId: 'pop-a', fingerprint: 'fp1', nowSec: 1000 }),
    ),
    'token_invalid',
  )
  rotateTokenSecret(dir)
  const secrets = loadTokenSecrets(dir)
  t.equal(secrets.length, 2)
  t.ok(
    verifyAccessToken(secrets, token, { popId: 'pop-a', fingerprint: 'fp1', nowSec: 1000 }),
    'old tokens live out their 5 minutes',
  )
  rotateTokenSecret(dir)
  t.equal(
    reason(() =>
      verifyAccessToken(loadTokenSecrets(dir), token, {
        popId: 'pop-a',
        fingerprint: 'fp1',
        nowSec: 1000,
      }),
    ),
    'token_invalid',
  )
})

t.test('refresh tokens rotate; reuse revokes the chain', async (t) => {
  const db = openDb(join(t.testdir(), 'meta.db'))
  t.teardown(() => db.close())
  const e = { popId: 'pop-a', fingerprint: 'fp1', nowSec: 1000 }
  const r0 = issueRefreshToken(db, 'pop-a', 'fp1', 1000)
  const r1 = rotateRefreshToken(db, r0.token, e)
  const r2 = rotateRefreshToken(db, r1.token, e)
  t.equal(r1.chainId, r2.chainId)
  t.equal(
    reason(() => rotateRefreshToken(db, r2.token, { ...e, fingerprint: 'fp2' })),
    'token_wrong_cert',
  )
  t.equal(
    reason(() => rotateRefreshToken(db, r0.token, e)),
    'refresh_reused',
  )
  t.equal(
    reason(() => rotateRefreshToken(db, r2.token, e)),
    'refresh_reused',
    'the live one died with its chain',
  )
  t.equal(
    reason(() => rotateRefreshToken(db, 'x'.repeat(43), e)),
    'refresh_invalid',
  )
  t.equal(
    reason(() => rotateRefreshToken(db, 'short', e)),
    'refresh_invalid',
  )
  const other = issueRefreshToken(db, 'pop-a', 'fp1', 1000)
  t.equal(
    reason(() => rotateRefreshToken(db, other.token, { ...e, nowSec: 1000 + 25 * 3600 })),
    'refresh_expired',
  )
})
