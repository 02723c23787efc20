// lib/auth/pop-auth.ts: PopAuthenticator's order of checks, each decision audited, with
// real openssl certificates; revocation and rotation; fail closed.
import t from 'tap'
import { join } from 'node:path'
import { X509Certificate } from 'node:crypto'
import { openDb } from '../../../lib/db/open.js'
import { loadTokenSecrets } from '../../../lib/auth/tokens.js'
import { addPop, removePop, rotatePopCert, setPopAllowlist } from '../../../lib/auth/pops.js'
import { PopAuthenticator, type PopRequestInput } from '../../../lib/auth/pop-auth.js'
import { revokeCert, listCerts } from '../../../lib/auth/ca.js'
import { signRequest } from '../../../lib/auth/http-signature.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { makePki, makePop } from '../../fixtures/pki.js'
import { reasonAsync } from '../../fixtures/reasons.js'

t.test('with real certificates', async (t) => {
  const root = t.testdir()
  const pki = await makePki(root, ['pop-a', 'pop-b'])
  const db = openDb(join(root, 'meta.db'))
  t.teardown(() => db.close())
  const A = pki.pops['pop-a']!
  const B = pki.pops['pop-b']!

  // the registry as pops.test.ts leaves it
  addPop(db, { id: 'pop-a', certPem: A.certPem, allowlist: ['127.0.0.1/32'], name: 'A' })
  addPop(db, { id: 'pop-b', certPem: B.certPem, allowlist: ['127.0.0.1'] })
  setPopAllowlist(db, 'pop-b', ['127.0.0.0/8'])

  const told: string[] = []
  const auth = new PopAuthenticator({
    db,
    caCertPem: pki.caCertPem,
    crlFile: pki.crlFile,
    tokenSecrets: () => loadTokenSecrets(root),
    onRefused: (reason) => told.push(reason),
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

  t.test(
    'the address screen reads the registry once per change, from any connection',
    async (t) => {
      const loads = auth.allowlistLoads
      for (let i = 0; i < 50; i++) t.equal(auth.screenConnection('127.0.0.9'), null)
      t.equal(auth.screenConnection('192.0.2.9'), 'ip_not_allowed', 'a stranger is dropped')
      t.ok(auth.allowlistLoads - loads <= 1, 'the allowlists were read at most once')
      // another connection (another process: the CLI) adds a POP for 192.0.2.0/24
      const other = openDb(join(root, 'meta.db'))
      const C = await makePop(pki.coreDir, root, 'pop-c')
      addPop(other, { id: 'pop-c', certPem: C.certPem, allowlist: ['192.0.2.0/24'] })
      t.equal(auth.screenConnection('192.0.2.9'), null, 'its address passes the screen at once')
      removePop(other, 'pop-c')
      other.close()
      t.equal(auth.screenConnection('192.0.2.9'), 'ip_not_allowed', 'and is dropped once removed')
      t.equal(auth.allowlistLoads - loads, 3, 'one read per registry change')
    },
  )

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
    t.same(
      told,
      [...cases.map((c) => c[0]), 'nonce_replayed'],
      'each refusal told where its row is written (clavitor_auth_refusals_total), not counted from the log',
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
