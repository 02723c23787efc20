// The POPs page acts: enrol a POP from its certificate (the same library call as
// `clavitor core pop add`, the rsync password shown once), revoke its certificates (CRL),
// remove it. Installation admins only: an MSP's owner and a viewer are refused.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { initCa, listCerts } from '../../../lib/auth/ca.js'
import { listPops } from '../../../lib/auth/pops.js'
import { recordReport } from '../../../lib/core-sync/pop-state.js'
import { adminApp, csrfFor, seedAdmin } from '../../fixtures/admin.js'
import { makePop } from '../../fixtures/pki.js'
import { IDS, seedTwoMsps } from '../../fixtures/scoped.js'

process.env.CLAVITOR_PROTECTION = 'off'

t.test('enrol, revoke, remove a POP from the page; refused outside the installation', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'clavitor-pops-page-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const dir = join(root, 'core')
  const { core, app } = await adminApp(t, { dataDir: dir })
  seedTwoMsps(core)
  await initCa(dir)
  const pop = await makePop(dir, root, 'pop-ams')
  const post = async (cookie: string, url: string, payload: Record<string, string>) => {
    const c = await csrfFor(app, cookie, '/admin/tokens')
    return app.inject({
      method: 'POST',
      url,
      headers: { cookie: c.cookie },
      payload: { _csrf: c.token, ...payload },
    })
  }
  const form = {
    id: 'pop-ams',
    name: 'Amsterdam',
    allow: '10.1.0.0/16, 10.2.0.1',
    cert: pop.certPem,
  }

  // refused: an MSP's owner (scope), a viewer (role)
  const msp = seedAdmin(core.db, 'owner', 'Mo', IDS.mspA)
  const res1 = await post(msp.cookie, '/admin/pops', form)
  t.equal(res1.statusCode, 403)
  t.match(res1.body, /installation-wide admins only/)
  const viewer = seedAdmin(core.db, 'viewer', 'Vic')
  t.equal((await post(viewer.cookie, '/admin/pops', form)).statusCode, 403)
  t.same(listPops(core.db), [], 'nothing enrolled')

  // the owner enrols it: the rsync password once
  const owner = seedAdmin(core.db, 'owner', 'Ada')
  const page = await app.inject({
    method: 'GET',
    url: '/admin/pops',
    headers: { cookie: owner.cookie },
  })
  t.match(page.body, /id="enrol-pop"/)
  const enrolled = await post(owner.cookie, '/admin/pops', form)
  t.equal(enrolled.statusCode, 200)
  t.match(enrolled.body, /id="rsync-password">[A-Za-z0-9_-]{20,}</)
  t.match(listPops(core.db), [
    {
      id: 'pop-ams',
      name: 'Amsterdam',
      allowlist: ['10.1.0.0/16', '10.2.0.1'],
      certFingerprint: pop.fingerprint,
    },
  ])
  const again = await app.inject({
    method: 'GET',
    url: '/admin/pops',
    headers: { cookie: owner.cookie },
  })
  t.notMatch(again.body, /id="rsync-password"/, 'shown once')

  // a bad certificate: refused with the library's message, nothing enrolled
  const bad = await post(owner.cookie, '/admin/pops', {
    ...form,
    id: 'pop-bad',
    cert: 'not a cert',
  })
  t.equal(bad.statusCode, 400)
  t.equal(listPops(core.db).length, 1)

  // revoke its certificates, then remove it
  t.equal((await post(owner.cookie, '/admin/pops/pop-ams/revoke', {})).statusCode, 303)
  t.match(
    listCerts(dir).find((c) => c.subject === '/CN=pop-ams'),
    { status: 'revoked' },
    'on the CRL',
  )
  t.equal((await post(msp.cookie, '/admin/pops/pop-ams/remove', {})).statusCode, 403)
  t.equal((await post(owner.cookie, '/admin/pops/pop-ams/remove', {})).statusCode, 303)
  t.same(listPops(core.db), [], 'no longer trusted')
  t.match(listPops(core.db, { includeRemoved: true }), [{ id: 'pop-ams' }])
})

t.test('the lag of a POP that holds nothing reads "no blobs yet", not decades', async (t) => {
  const { core, app } = await adminApp(t)
  await core.store.put('ab'.repeat(16), Buffer.from('x'))
  core.db.prepare("INSERT INTO pops (id, name, created_at) VALUES ('pop-new', 'New', 1)").run()
  recordReport(core.db, 'pop-new', { cursor: null, ok: true, blobs: 0 })
  const owner = seedAdmin(core.db, 'owner', 'Ada')
  const page = await app.inject({
    method: 'GET',
    url: '/admin/pops',
    headers: { cookie: owner.cookie },
  })
  t.equal(page.statusCode, 200)
  const row = /<tr>(?:(?!<\/tr>)[\s\S])*pop-new[\s\S]*?<\/tr>/.exec(page.body)?.[0] ?? ''
  t.match(row, /no blobs yet/)
  t.notMatch(row, /\d+(\.\d)? h</, 'not hours since 1970')
})

t.test('after a successful run the POP shows no error, only when it last failed', async (t) => {
  const { core, app } = await adminApp(t)
  core.db.prepare("INSERT INTO pops (id, name, created_at) VALUES ('pop-x', 'X', 1)").run()
  const error = { code: 'CLA_ERR_SYNC_NETWORK', message: 'link cut' }
  recordReport(core.db, 'pop-x', { cursor: null, ok: false, error })
  const owner = seedAdmin(core.db, 'owner', 'Ada')
  const rowOf = async () => {
    const page = await app.inject({ url: '/admin/pops', headers: { cookie: owner.cookie } })
    return /<tr>(?:(?!<\/tr>)[\s\S])*pop-x[\s\S]*?<\/tr>/.exec(page.body)?.[0] ?? ''
  }
  t.match(await rowOf(), /class="error">CLA_ERR_SYNC_NETWORK: link cut/)
  recordReport(core.db, 'pop-x', { cursor: null, ok: true })
  const row = await rowOf()
  t.notMatch(row, /CLA_ERR_SYNC_NETWORK/, 'the old error is not shown as current')
  t.match(row, /last failed/, 'when it last failed is still there')
})
