// The rsync channel's auth from the POP registry: hosts allow = union of the live POPs'
// allowlists, one read-only rsync user per POP with a password in a 0600 secrets file,
// fail closed when nobody has credentials, removed POPs pruned; the POP's password file
// handling; the ssh authorized_keys line.
import t from 'tap'
import { chmodSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { openDb } from '../../../lib/db/open.js'
import { addPop, removePop } from '../../../lib/auth/pops.js'
import { renderRsyncdConfig, rsyncdModule } from '../../../lib/core-sync/rsyncd-config.js'
import {
  dropRsyncSecret,
  isDaemonSource,
  issueRsyncSecret,
  popRsyncAuthArgs,
  popRsyncPasswordFile,
  readRsyncdSecrets,
  rsyncdAuthFromRegistry,
  rsyncdSecretsFile,
  rsyncUserFor,
  sshAuthorizedKeyLine,
} from '../../../lib/core-sync/rsync-auth.js'
import { makePki } from '../../fixtures/pki.js'
import { tempDir } from '../../fixtures/sync.js'

const root = tempDir(t, 'cla-rsyncd-')
const pki = await makePki(root, ['ams1', 'fra1', 'lon1'])
const coreDir = pki.coreDir

t.test('module lines: fail closed without users, full auth with them', async (t) => {
  const closed = rsyncdModule({
    storeRoot: '/s',
    auth: { required: true, hostsAllow: [], authUsers: [], secretsFile: '/k/s' },
  })
  t.same(
    closed.filter(([k]) => k.startsWith('hosts') || k.startsWith('auth')),
    [['hosts deny', '*']],
    'nobody allowed, no auth users line',
  )
  t.notOk(
    closed.some(([k]) => k === 'hosts allow'),
    'no hosts allow',
  )
  const noHosts = rsyncdModule({
    storeRoot: '/s',
    auth: { required: true, hostsAllow: [], authUsers: ['u'], secretsFile: '/k/s' },
  })
  t.notOk(
    noHosts.some(([k]) => k === 'auth users' || k === 'hosts allow'),
    'users but no addresses: still closed',
  )
  const text = renderRsyncdConfig({
    storeRoot: '/srv/store',
    auth: {
      required: true,
      hostsAllow: ['192.0.2.0/24', '2001:db8::/32'],
      authUsers: ['clavitor-pop-a', 'clavitor-pop-b'],
      secretsFile: '/srv/keys/rsyncd.secrets',
    },
  })
  t.match(text, /hosts allow = 192\.0\.2\.0\/24 2001:db8::\/32\n/)
  t.match(text, /hosts deny = \*\n/)
  t.match(text, /auth users = clavitor-pop-a:ro, clavitor-pop-b:ro\n/)
  t.match(text, /secrets file = \/srv\/keys\/rsyncd\.secrets\n/)
  t.match(text, /strict modes = yes\n/)
  t.match(text, /read only = yes\n/)
  t.throws(
    () =>
      rsyncdModule({
        storeRoot: '/s',
        auth: { hostsAllow: ['1.2.3.4\n[evil]'] },
      }),
    { code: 'CLA_ERR_INVALID_OPTION' },
    'no line injection through an allowlist entry',
  )
})

t.test('registry: secrets issued, union of allowlists, removed POPs pruned', async (t) => {
  const db = openDb(join(coreDir, 'meta.db'))
  t.teardown(() => db.close())
  addPop(db, { id: 'ams1', certPem: pki.pops.ams1!.certPem, allowlist: ['192.0.2.10/32'] })
  addPop(db, {
    id: 'fra1',
    certPem: pki.pops.fra1!.certPem,
    allowlist: ['198.51.100.0/24', '2001:db8:77::/48'],
  })
  addPop(db, { id: 'lon1', certPem: pki.pops.lon1!.certPem, allowlist: ['203.0.113.7'] })

  const none = rsyncdAuthFromRegistry(db, coreDir)
  t.same(none.auth.authUsers, [], 'no passwords yet: no users')
  t.same(none.auth.hostsAllow, [], 'and no addresses')
  t.same(none.withoutSecret.sort(), ['ams1', 'fra1', 'lon1'])
  t.throws(() => issueRsyncSecret(db, coreDir, 'nope'), { code: 'CLA_ERR_NOT_FOUND' })

  const a = issueRsyncSecret(db, coreDir, 'ams1')
  const f = issueRsyncSecret(db, coreDir, 'fra1')
  t.equal(a.user, 'clavitor-pop-ams1')
  t.match(a.password, /^[A-Za-z0-9_-]{32}$/, '24 random bytes, base64url')
  t.not(a.password, f.password)
  const file = rsyncdSecretsFile(coreDir)
  t.equal(file, join(coreDir, 'keys', 'rsyncd.secrets'))
  t.equal(statSync(file).mode & 0o777, 0o600, 'secrets file 0600')
  t.equal(readRsyncdSecrets(file).get('clavitor-pop-ams1'), a.password)
  t.equal(
    (db.prepare("SELECT rsync_user FROM pops WHERE id = 'ams1'").get() as { rsync_user: string })
      .rsync_user,
    'clavitor-pop-ams1',
    'pops.rsync_user recorded',
  )

  const r = rsyncdAuthFromRegistry(db, coreDir)
  t.same(r.auth.authUsers, ['clavitor-pop-ams1', 'clavitor-pop-fra1'])
  t.same(r.auth.hostsAllow, ['192.0.2.10/32', '198.51.100.0/24', '2001:db8:77::/48'])
  t.same(r.withoutSecret, ['lon1'], 'a POP without credentials is neither user nor host')
  t.equal(r.auth.secretsFile, file)

  // a new password replaces the old one
  const a2 = issueRsyncSecret(db, coreDir, 'ams1')
  t.equal(readRsyncdSecrets(file).get('clavitor-pop-ams1'), a2.password)
  t.not(a2.password, a.password)

  // removed POP: pruned from the secrets file by the next generation
  removePop(db, 'fra1')
  const r2 = rsyncdAuthFromRegistry(db, coreDir)
  t.same(r2.pruned, ['clavitor-pop-fra1'])
  t.same(r2.auth.authUsers, ['clavitor-pop-ams1'])
  t.same(r2.auth.hostsAllow, ['192.0.2.10/32'])
  t.notOk(readRsyncdSecrets(file).has('clavitor-pop-fra1'), 'gone from the secrets file')
  t.equal(statSync(file).mode & 0o777, 0o600)

  // dropRsyncSecret (core pop remove) takes effect without a regeneration
  t.equal(dropRsyncSecret(coreDir, 'ams1'), true)
  t.equal(dropRsyncSecret(coreDir, 'ams1'), false)
  t.notOk(readRsyncdSecrets(file).has('clavitor-pop-ams1'))

  // a secrets file someone loosened is put back to 0600
  issueRsyncSecret(db, coreDir, 'ams1')
  chmodSync(file, 0o644)
  rsyncdAuthFromRegistry(db, coreDir)
  t.equal(statSync(file).mode & 0o777, 0o600, 'mode restored')
  t.match(readFileSync(file, 'utf8'), /^# Generated by clavitor/)
})

t.test('POP side: --password-file only for a daemon source and a 0600 file', async (t) => {
  const dir = tempDir(t)
  const src = 'rsync://clavitor-pop-ams1@192.0.2.1:873/clavitor-store/'
  t.ok(isDaemonSource(src))
  t.ok(isDaemonSource('core::clavitor-store/'))
  t.notOk(isDaemonSource('clavitor@core:/'))
  t.notOk(isDaemonSource('/srv/store'))
  t.same(popRsyncAuthArgs(dir, src), [], 'no file: no argument')
  const pw = popRsyncPasswordFile(dir)
  t.equal(pw, join(dir, 'pop-auth', 'rsync.password'))
  mkdirSync(join(dir, 'pop-auth'))
  writeFileSync(pw, 'secret\n', { mode: 0o600 })
  t.same(popRsyncAuthArgs(dir, src), [`--password-file=${pw}`])
  t.same(popRsyncAuthArgs(dir, 'clavitor@core:/'), [], 'ssh: the key authenticates')
  chmodSync(pw, 0o640)
  t.throws(() => popRsyncAuthArgs(dir, src), { code: 'CLA_ERR_INVALID_OPTION' }, 'group-readable')
})

t.test('ssh: authorized_keys line with the read-only forced command', async (t) => {
  const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOm1yR2x3gJ0+abc/def= root@pop\n'
  const line = sshAuthorizedKeyLine({
    popId: 'ams1',
    publicKey: key,
    storeRoot: '/var/lib/clavitor/store',
    from: ['192.0.2.10/32', '2001:db8::/32'],
  })
  t.equal(
    line,
    'from="192.0.2.10/32,2001:db8::/32",command="/usr/bin/rrsync -ro /var/lib/clavitor/store",restrict ' +
      'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOm1yR2x3gJ0+abc/def= clavitor-pop-ams1',
  )
  t.equal(rsyncUserFor('ams1'), 'clavitor-pop-ams1')
  for (const bad of [
    'command="sh" ssh-ed25519 AAAA',
    'ssh-ed25519 AAAA\nssh-ed25519 BBBB',
    'ssh-dss AAAA',
    '',
  ]) {
    t.throws(
      () => sshAuthorizedKeyLine({ popId: 'a', publicKey: bad, storeRoot: '/s' }),
      { code: 'CLA_ERR_INVALID_INPUT' },
      JSON.stringify(bad),
    )
  }
  t.throws(
    () => sshAuthorizedKeyLine({ popId: 'a', publicKey: key, storeRoot: '/s t"; rm -rf /' }),
    { code: 'CLA_ERR_INVALID_OPTION' },
  )
  t.throws(
    () => sshAuthorizedKeyLine({ popId: 'a', publicKey: key, storeRoot: '/s', from: ['*'] }),
    { code: 'CLA_ERR_INVALID_OPTION' },
  )
})

t.test('daemon refusals map to CLA_ERR_SYNC_RSYNC_AUTH with a reason', async (t) => {
  const { rsyncError } = await import('../../../lib/pop-sync/rsync.js')
  const cases: Array<[string, string]> = [
    ['@ERROR: auth failed on module clavitor-store', 'auth_failed'],
    ['@ERROR: access denied to clavitor-store from localhost (127.0.0.2)', 'access_denied'],
    ["@ERROR: Unknown module 'clavitor-store'", 'unknown_module'],
  ]
  for (const [stderr, reason] of cases) {
    const e = rsyncError(
      5,
      stderr + '\nrsync error: error starting client-server protocol (code 5)\n',
    )
    t.equal(e.code, 'CLA_ERR_SYNC_RSYNC_AUTH', reason)
    t.equal(e.details?.reason, reason)
    t.equal(e.details?.rsync_exit, 5)
  }
  t.equal(rsyncError(5, 'connection refused').code, 'CLA_ERR_SYNC_NETWORK', 'no daemon: network')
})

t.test('core URL: https always; plain http only to loopback or when asked', async (t) => {
  const { checkCoreUrl } = await import('../../../lib/pop.js')
  for (const ok of [
    'https://core.example:8443',
    'https://192.0.2.1',
    'http://127.0.0.1:8080',
    'http://127.9.9.9',
    'http://localhost:1',
    'http://[::1]:8080',
  ])
    t.doesNotThrow(() => checkCoreUrl(ok, false), ok)
  for (const bad of ['http://192.0.2.1:8080', 'http://core.example', 'http://[2001:db8::1]:80'])
    t.throws(() => checkCoreUrl(bad, false), { code: 'CLA_ERR_INVALID_OPTION' }, bad)
  t.doesNotThrow(() => checkCoreUrl('http://192.0.2.1:8080', true), 'with --insecure-plain-http')
  for (const bad of ['ftp://core', 'core:8443', ''])
    t.throws(() => checkCoreUrl(bad, true), { code: 'CLA_ERR_INVALID_OPTION' }, bad)
})

t.test('the daemon answers without Nagle delays or DNS lookups', async (t) => {
  const conf = renderRsyncdConfig({ storeRoot: '/srv/clavitor/store' })
  t.match(conf, /^socket options = TCP_NODELAY$/m, 'global: TCP_NODELAY')
  t.match(conf, /^ {4}reverse lookup = no$/m, 'module: no reverse lookup')
  t.ok(conf.indexOf('socket options') < conf.indexOf('['), 'socket options is a global setting')
})
