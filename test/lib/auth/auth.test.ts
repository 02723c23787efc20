// lib/auth decisions without HTTP: allowlist, window and nonces, tokens, the POP
// registry, and PopAuthenticator's order of checks with real openssl certificates.
import t from 'tap'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { openDb } from '../../../lib/db/open.js'
import { ipAllowed, normalizeIp, parseAllowlist } from '../../../lib/auth/allowlist.js'
import { NonceStore, checkWindow } from '../../../lib/auth/replay.js'
import {
  issueAccessToken,
  issueRefreshToken,
  loadTokenSecrets,
  rotateRefreshToken,
  rotateTokenSecret,
  verifyAccessToken,
} from '../../../lib/auth/tokens.js'
import {
  addPop,
  getPop,
  listPops,
  removePop,
  rotatePopCert,
  setPopAllowlist,
} from '../../../lib/auth/pops.js'
import { PopAuthenticator, type PopRequestInput } from '../../../lib/auth/pop-auth.js'
import { revokeCert, listCerts } from '../../../lib/auth/ca.js'
import { signRequest } from '../../../lib/auth/http-signature.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { ClavitorError } from '../../../lib/errors.js'
import { makePki, makePop } from '../../fixtures/pki.js'

function reason(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof ClavitorError) return String(err.details?.reason ?? err.code)
    throw err
  }
  return undefined
}
async function reasonAsync(p: Promise<unknown>): Promise<string | undefined> {
  try {
    await p
  } catch (err) {
    if (err instanceof ClavitorError) return String(err.details?.reason ?? err.code)
    throw err
  }
  return undefined
}

t.test('allowlist: CIDR v4/v6, IPv4-mapped IPv6, bad entries', async (t) => {
  const l = parseAllowlist(['127.0.0.1', '10.0.0.0/8', '2001:db8::/32', '::ffff:192.0.2.0/120'])
  t.ok(ipAllowed('127.0.0.1', l))
  t.ok(ipAllowed('::ffff:127.0.0.1', l), 'mapped address matches the IPv4 entry')
  t.notOk(ipAllowed('127.0.0.2', l))
  t.ok(ipAllowed('10.200.3.4', l))
  t.ok(ipAllowed('2001:db8::1', l))
  t.ok(ipAllowed('192.0.2.7', l), 'mapped CIDR applies to IPv4')
  t.notOk(ipAllowed('2001:db9::1', l))
  t.notOk(ipAllowed(undefined, l))
  t.notOk(ipAllowed('garbage', l))
  t.equal(normalizeIp('::ffff:10.1.2.3'), '10.1.2.3')
  t.throws(() => parseAllowlist(['10.0.0.0/33']), { code: 'CLA_ERR_INVALID_OPTION' })
  t.throws(() => parseAllowlist(['example.com']), { code: 'CLA_ERR_INVALID_OPTION' })
})

t.test('time window and nonce store (survives a reopen, prunes expired)', async (t) => {
  t.equal(
    reason(() => checkWindow(1000, 1000)),
    undefined,
  )
  t.equal(
    reason(() => checkWindow(1000 - 301, 1000)),
    'ts_too_old',
  )
  t.equal(
    reason(() => checkWindow(1000 + 31, 1000)),
    'ts_in_future',
  )
  t.equal(
    reason(() => checkWindow(1000 - 10, 1000, { maxAgeSec: 5 })),
    'ts_too_old',
  )
  const file = join(t.testdir(), 'meta.db')
  let db = openDb(file)
  new NonceStore(db).use('pop-a', 'n1', 2000, 1000)
  t.equal(
    reason(() => new NonceStore(db).use('pop-a', 'n1', 2000, 1000)),
    'nonce_replayed',
  )
  new NonceStore(db).use('pop-b', 'n1', 2000, 1000) // per POP
  db.close()
  db = openDb(file)
  t.teardown(() => db.close())
  const store = new NonceStore(db)
  t.equal(
    reason(() => store.use('pop-a', 'n1', 2000, 1001)),
    'nonce_replayed',
    'after a restart',
  )
  t.equal(
    reason(() => store.use('pop-a', '', 2000, 1001)),
    'nonce_invalid',
  )
  store.use('pop-a', 'old', 1500, 1001)
  t.equal(store.pruneExpired(1600), 1)
  t.equal((db.prepare('SELECT count(*) AS n FROM pop_nonces').get() as { n: number }).n, 2)
})

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

t.test('with real certificates', async (t) => {
  const root = t.testdir()
  const pki = await makePki(root, ['pop-a', 'pop-b'])
  const db = openDb(join(root, 'meta.db'))
  t.teardown(() => db.close())
  const A = pki.pops['pop-a']!
  const B = pki.pops['pop-b']!

  t.test('registry', async (t) => {
    t.throws(() => addPop(db, { id: 'pop-a', certPem: B.certPem, allowlist: ['127.0.0.1'] }), {
      code: 'CLA_ERR_INVALID_INPUT',
    })
    t.throws(() => addPop(db, { id: 'pop-a', certPem: A.certPem, allowlist: [] }), {
      code: 'CLA_ERR_INVALID_OPTION',
    })
    t.throws(() => addPop(db, { id: 'pop-a', certPem: A.certPem, allowlist: ['nope'] }), {
      code: 'CLA_ERR_INVALID_OPTION',
    })
    const rec = addPop(db, {
      id: 'pop-a',
      certPem: A.certPem,
      allowlist: ['127.0.0.1/32'],
      name: 'A',
    })
    t.equal(rec.certFingerprint, A.fingerprint)
    t.throws(() => addPop(db, { id: 'pop-a', certPem: A.certPem, allowlist: ['127.0.0.1'] }), {
      code: 'CLA_ERR_POP_EXISTS',
    })
    addPop(db, { id: 'pop-b', certPem: B.certPem, allowlist: ['127.0.0.1'] })
    t.same(
      listPops(db).map((p) => p.id),
      ['pop-a', 'pop-b'],
    )
    removePop(db, 'pop-b')
    t.equal(getPop(db, 'pop-b'), undefined)
    t.same(
      listPops(db, { includeRemoved: true }).map((p) => p.id),
      ['pop-a', 'pop-b'],
    )
    t.throws(() => removePop(db, 'pop-b'), { code: 'CLA_ERR_NOT_FOUND' })
    addPop(db, { id: 'pop-b', certPem: B.certPem, allowlist: ['127.0.0.1'] })
    t.same(setPopAllowlist(db, 'pop-b', ['127.0.0.0/8']).allowlist, ['127.0.0.0/8'])
  })

  const auth = new PopAuthenticator({
    db,
    caCertPem: pki.caCertPem,
    crlFile: pki.crlFile,
    tokenSecrets: () => loadTokenSecrets(root),
  })
  const req = (
    pop: typeof A,
    o: Partial<PopRequestInput> & {
      signWith?: typeof A
      keyid?: string
      created?: number
      body?: string
    } = {},
  ): PopRequestInput => {
    const body = o.body ?? '{"x":1}'
    const base = {
      method: 'POST',
      path: '/pop/v1/report',
      query: 'a=1',
      authority: '127.0.0.1:8443',
      headers: { 'content-type': 'application/json' },
    }
    const h = signRequest(
      base,
      { key: (o.signWith ?? pop).key, keyid: o.keyid ?? pop.id, created: o.created },
      body,
    )
    return {
      ...base,
      headers: { ...base.headers, ...h },
      rawBody: Buffer.from(body),
      ip: '127.0.0.1',
      peerCertificate: { raw: new X509Certificate(pop.certPem).raw },
      tokenOptional: true,
      ...o,
    }
  }

  t.test('decisions, each audited', async (t) => {
    const ok = await auth.authenticate(req(A))
    t.equal(ok.popId, 'pop-a')
    t.equal(ok.fingerprint, A.fingerprint)
    const cases: Array<[string, PopRequestInput]> = [
      ['ip_not_allowed', req(A, { ip: '192.0.2.1' })],
      ['bad_path', req(A, { path: '/pop/v1/../admin' })],
      ['bad_path', req(A, { path: '/pop/v1/%2e%2e/x' })],
      ['cert_missing', req(A, { peerCertificate: null })],
      [
        'cert_untrusted',
        req(A, { peerCertificate: { raw: new X509Certificate(pki.foreign.certPem).raw } }),
      ],
      ['sig_keyid_mismatch', req(A, { keyid: 'pop-b', signWith: B })],
      ['sig_invalid', req(A, { signWith: B })],
      ['sig_keyid_unknown', req(A, { keyid: 'pop-zzz' })],
      ['digest_mismatch', { ...req(A), rawBody: Buffer.from('{"x":2}') }],
      ['ts_too_old', req(A, { created: Math.floor(Date.now() / 1000) - 600 })],
      ['ts_in_future', req(A, { created: Math.floor(Date.now() / 1000) + 600 })],
      ['token_missing', req(A, { tokenOptional: false })],
    ]
    for (const [want, r] of cases) t.equal(await reasonAsync(auth.authenticate(r)), want, want)
    const replay = req(A)
    await auth.authenticate(replay)
    t.equal(await reasonAsync(auth.authenticate(replay)), 'nonce_replayed')
    const rows = listEvents(db, { kind: 'pop.request', order: 'asc', limit: 1000 })
    t.equal(rows.length, 1 + cases.length + 2, 'one audit row per decision')
    t.same(
      rows.filter((r) => r.outcome === 'refused').map((r) => r.reason),
      [...cases.map((c) => c[0]), 'nonce_replayed'],
    )
    t.match(
      rows.find((r) => r.reason === 'cert_untrusted'),
      { actor: 'unknown', ip: '127.0.0.1' },
    )
    t.match(
      rows.find((r) => r.reason === 'sig_invalid'),
      { actor: 'pop-a', fingerprint: A.fingerprint },
    )
    t.equal(verifyChain(db).ok, true)
  })

  t.test('revocation is seen on the next request; rotation rebinds', async (t) => {
    await revokeCert(pki.coreDir, { popId: 'pop-b' })
    t.equal(listCerts(pki.coreDir).find((c) => c.popId === 'pop-b')?.status, 'revoked')
    t.equal(await reasonAsync(auth.authenticate(req(B))), 'cert_revoked')
    const B2 = await makePop(pki.coreDir, root, 'pop-b')
    t.equal(
      await reasonAsync(auth.authenticate(req(B2))),
      'cert_not_bound',
      'a new cert is refused until registered',
    )
    rotatePopCert(db, 'pop-b', B2.certPem)
    t.equal((await auth.authenticate(req(B2))).popId, 'pop-b')
    removePop(db, 'pop-b')
    t.equal(await reasonAsync(auth.authenticate(req(B2))), 'pop_unknown')
  })

  t.test('fail closed when the audit log cannot be written', async (t) => {
    db.exec(
      "CREATE TRIGGER no_audit BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    t.teardown(() => db.exec('DROP TRIGGER no_audit'))
    t.equal(
      await reasonAsync(auth.authenticate(req(A))),
      'CLA_ERR_AUDIT_WRITE_FAILED',
      'a good request is refused',
    )
    t.equal(
      await reasonAsync(auth.authenticate(req(A, { ip: '192.0.2.1' }))),
      'CLA_ERR_AUDIT_WRITE_FAILED',
    )
  })
})
