// lib/auth/ca.ts with the real openssl CLI.
import t from 'tap'
import { X509Certificate } from 'node:crypto'
import { readFileSync, statSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import {
  CrlCache,
  caPaths,
  describeCert,
  generateCrl,
  initCa,
  issuePopCert,
  issueServerCert,
  listCerts,
  popIdFromCert,
  popInit,
  revokeCert,
} from '../../../lib/auth/ca.js'

t.test('CA init, POP issue, server SANs, revoke, CRL cache', async (t) => {
  const dir = t.testdir()
  const core = join(dir, 'core')
  await initCa(core, { serverSans: ['core.example', '10.1.2.3', '::1'] })
  const p = caPaths(core)
  t.equal(statSync(p.key).mode & 0o777, 0o600)
  t.equal(statSync(p.serverKey).mode & 0o777, 0o600)
  t.equal(statSync(p.dir).mode & 0o777, 0o700)
  await t.rejects(initCa(core), { code: 'CLA_ERR_AUTH_CA' }, 'never overwritten')

  const server = new X509Certificate(readFileSync(p.serverCert))
  t.match(server.subjectAltName, /DNS:localhost/)
  t.match(server.subjectAltName, /IP Address:127\.0\.0\.1/)
  t.match(server.subjectAltName, /DNS:core\.example/)
  t.match(server.subjectAltName, /IP Address:10\.1\.2\.3/)
  t.ok(server.checkIssued(new X509Certificate(readFileSync(p.cert))))
  await t.rejects(issueServerCert(core, { sans: ['bad name!'] }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })

  const pop = join(dir, 'pop')
  const { csrPem } = await popInit(pop, 'fra-2')
  await t.rejects(popInit(pop, 'fra-2'), { code: 'CLA_ERR_AUTH_CA' }, 'POP key never overwritten')
  await t.rejects(popInit(join(dir, 'x'), 'Bad_Id'), { code: 'CLA_ERR_INVALID_OPTION' })
  const c = await issuePopCert(core, { popId: 'fra-2', csrPem })
  const cert = new X509Certificate(c.certPem)
  t.equal(popIdFromCert(cert), 'fra-2')
  t.match(cert.subjectAltName, 'URI:urn:clavitor:pop:fra-2')
  t.match(cert.keyUsage ?? [], ['1.3.6.1.5.5.7.3.2'], 'clientAuth EKU')
  t.equal(c.publicKey.length, 44, 'raw Ed25519 key, base64')
  t.same(describeCert(c.certPem), { ...c, popId: 'fra-2' })

  // a CSR with a P-256 key is refused; so is a tampered CSR
  const ecKey = (
    await execa('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'])
  ).stdout
  writeFileSync(join(dir, 'ec.key'), ecKey)
  const ecCsr = (
    await execa('openssl', ['req', '-new', '-key', join(dir, 'ec.key'), '-subj', '/CN=x'])
  ).stdout
  await t.rejects(issuePopCert(core, { popId: 'x', csrPem: ecCsr }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })
  const lines = csrPem.trim().split('\n')
  const body = Buffer.from(lines.slice(1, -1).join(''), 'base64')
  body.writeUInt8(body.readUInt8(body.length - 10) ^ 0xff, body.length - 10)
  const bad = `${lines[0]}\n${body.toString('base64').replace(/(.{64})/g, '$1\n')}\n${lines.at(-1)}\n`
  await t.rejects(issuePopCert(core, { popId: 'fra-2', csrPem: bad }), {
    code: 'CLA_ERR_INVALID_INPUT',
  })

  const crl = new CrlCache(p.crl)
  t.equal(await crl.isRevoked(c.serial), false)
  t.same(await revokeCert(core, { serial: c.serial.toLowerCase() }), [c.serial])
  t.equal(await crl.isRevoked(c.serial), true, 'a rewritten CRL is re-read')
  await t.rejects(revokeCert(core, { popId: 'fra-2' }), { code: 'CLA_ERR_NOT_FOUND' })
  await generateCrl(core)
  t.equal(await crl.isRevoked(c.serial), true)
  const rows = listCerts(core)
  t.match(rows, [
    { status: 'valid', popId: undefined },
    { status: 'revoked', popId: 'fra-2' },
  ])
  t.equal(rows.length, 2, 'the refused CSRs issued nothing')
  await t.rejects(new CrlCache(join(dir, 'nope.pem')).isRevoked('01'), { code: 'CLA_ERR_AUTH_CA' })
  t.throws(() => listCerts(join(dir, 'nothing')), { code: 'CLA_ERR_AUTH_CA' })
})

t.test(
  'certificates issued at once each get their own serial (the CA files are locked)',
  async (t) => {
    const dir = t.testdir()
    const core = join(dir, 'core')
    await initCa(core)
    const ids = Array.from({ length: 12 }, (_, i) => `par-${i}`)
    const csrs = await Promise.all(ids.map(async (id) => (await popInit(join(dir, id), id)).csrPem))
    // `openssl ca` at once, issuing and making CRLs: OpenSSL's manual says it does no locking
    // of its files; under load, parallel issues failed loading the serial file
    const issued = await Promise.all(
      ids.map((popId, i) => issuePopCert(core, { popId, csrPem: csrs[i]! })),
    )
    t.equal(new Set(issued.map((c) => c.serial)).size, 12, 'distinct serials')
    t.same(
      listCerts(core)
        .filter((c) => c.popId?.startsWith('par-'))
        .map((c) => c.status),
      Array(12).fill('valid'),
      'all in the CA index, valid',
    )
  },
)
