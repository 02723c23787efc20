// The POP registry operations (lib/core-sync/pop-registry.ts) that the CLI and the demo share:
// each changes the registry and the rsync secrets as one step and leaves its audit row.
import t from 'tap'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import { getPop } from '../../../lib/auth/pops.js'
import { loadTokenSecrets } from '../../../lib/auth/tokens.js'
import { listEvents, verifyChain } from '../../../lib/audit/log.js'
import { readRsyncdSecrets, rsyncdSecretsFile } from '../../../lib/core-sync/rsync-auth.js'
import {
  enrolPop,
  rebindPopCert,
  renewRsyncSecret,
  renewTokenSecret,
  replacePopAllowlist,
  retirePop,
} from '../../../lib/core-sync/pop-registry.js'
import { makePki } from '../../fixtures/pki.js'
import { tempDir } from '../../fixtures/sync.js'

const root = tempDir(t, 'cla-pop-registry-')
const pki = await makePki(root, ['ams1'])
const core = pki.coreDir
const db = openDb(join(core, 'meta.db'))
t.teardown(() => db.close())
const who = { actor: 'cli' }
const secrets = () => readRsyncdSecrets(rsyncdSecretsFile(core))
const last = () => listEvents(db, { kind: 'admin.action', limit: 1 })[0]!

t.test('enrol, renew, rebind, allow, retire: each audited, secrets in step', async (t) => {
  const { pop, rsync } = enrolPop(
    db,
    core,
    { id: 'ams1', certPem: pki.pops.ams1!.certPem, allowlist: ['192.0.2.1/32'] },
    who,
  )
  t.equal(pop.id, 'ams1')
  t.equal(rsync.user, 'clavitor-pop-ams1')
  t.equal(secrets().get(rsync.user), rsync.password, 'the password is in the secrets file')
  t.match(last(), { actor: 'cli', reason: 'pop_add', fingerprint: pop.certFingerprint })

  const again = renewRsyncSecret(db, core, 'ams1', who)
  t.not(again.password, rsync.password)
  t.equal(secrets().get(rsync.user), again.password)
  t.match(last(), { reason: 'pop_rsync_secret' })

  t.same(replacePopAllowlist(db, 'ams1', ['198.51.100.0/24'], who).allowlist, ['198.51.100.0/24'])
  t.match(last(), { reason: 'pop_allowlist' })

  t.equal(rebindPopCert(db, 'ams1', pki.pops.ams1!.certPem, who).id, 'ams1')
  t.match(last(), { reason: 'pop_rotate_cert' })

  const before = loadTokenSecrets(core).length
  renewTokenSecret(db, core, who)
  t.ok(loadTokenSecrets(core).length >= before)
  t.match(last(), { reason: 'pop_token_secret_rotated' })

  retirePop(db, core, 'ams1', who)
  t.equal(getPop(db, 'ams1'), undefined, 'no longer a live POP')
  t.notOk(secrets().has(rsync.user), 'its rsync password is gone at once')
  t.match(last(), { reason: 'pop_remove' })
  t.equal(verifyChain(db).ok, true)
})

t.test('a refused enrolment writes nothing', async (t) => {
  const n = listEvents(db, { kind: 'admin.action', limit: 1000 }).length
  t.throws(
    () => enrolPop(db, core, { id: 'ams1', certPem: 'not a cert', allowlist: ['192.0.2.1'] }, who),
    { name: 'ClavitorError' },
  )
  t.equal(listEvents(db, { kind: 'admin.action', limit: 1000 }).length, n, 'no audit row')
})
