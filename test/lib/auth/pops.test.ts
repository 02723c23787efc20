// lib/auth/pops.ts: the POP registry (certificate binding, allowlists, removal).
import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import { addPop, getPop, listPops, removePop, setPopAllowlist } from '../../../lib/auth/pops.js'
import { makePki } from '../../fixtures/pki.js'

t.test('the registry, with real certificates', async (t) => {
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
})
