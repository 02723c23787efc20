// The production POP pull end to end with real authentication on both channels: the
// POP API over mTLS (signed requests, tokens) for the feed, and a real rsync daemon with
// per-POP `auth users`, a 0600 secrets file and `hosts allow` from the registry for the
// blobs. POPs are enrolled with the real commands (pop init, ca issue-pop, core pop add).
// A POP with a wrong password, from an address outside hosts allow, without credentials
// or removed gets nothing, and its cursor does not move.
import t from 'tap'
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { execa, type ResultPromise } from 'execa'
import { popAuthPaths } from '../../lib/auth/ca.js'
import { openDb } from '../../lib/db/open.js'
import { BlobStore } from '../../lib/store/index.js'
import { getMeta, K_CURSOR } from '../../lib/pop-sync/state.js'
import { popRsyncPasswordFile, rsyncdSecretsFile } from '../../lib/core-sync/rsync-auth.js'
import { randomBytes } from 'node:crypto'
import { randomP0 } from '../fixtures/sync.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const env = { ...process.env, CLAVITOR_PROTECTION: 'off', CLAVITOR_LOG_LEVEL: 'warn' }
const cla = (...args: string[]) => execa(CLI, args, { env })

// As the units run the core (UMask=0077): the daemon, as `nobody` in its chroot, must
// still read the store (issue 11, item 10).
process.umask(0o077)

if (process.getuid?.() !== 0) {
  t.plan(0, 'needs root: the rsync daemon chroots into the store (use chroot = yes)')
  process.exit(0)
}

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const p = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return p
}

function popState(dir: string): { cursor: string | null; blobs: number } {
  const db = openDb(join(dir, 'meta.db'))
  try {
    const blobs = (db.prepare('SELECT count(*) AS n FROM blobs').get() as { n: number }).n
    return { cursor: getMeta(db, K_CURSOR), blobs }
  } finally {
    db.close()
  }
}

const root = mkdtempSync(join(tmpdir(), 'cla-rsync-chan-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))
const core = join(root, 'core')
const children: ResultPromise[] = []
t.teardown(() => {
  for (const c of children) c.kill('SIGKILL')
})

// the core: CA, store with blobs
await cla('ca', 'init', '--data', core)
const coreStore = await BlobStore.init({ dataDir: core, protection: 'off', onWarning: () => {} })
const N = 40
for (let i = 0; i < N; i++) await coreStore.put(randomP0(), randomBytes(1500))
const corePub = coreStore.publicKey!
await coreStore.close()

/** A POP enrolled with the real commands; its rsync password lands in its pop-auth/. */
async function enrol(id: string): Promise<string> {
  const dir = join(root, id)
  const store = await BlobStore.init({
    dataDir: dir,
    role: 'pop',
    trustKeys: [corePub],
    protection: 'off',
    onWarning: () => {},
  })
  await store.close()
  await cla('pop', 'init', '--data', dir, '--id', id)
  const cert = join(root, `${id}.pem`)
  await cla(
    'ca',
    'issue-pop',
    '--data',
    core,
    '--id',
    id,
    '--csr',
    popAuthPaths(dir).csr,
    '--out',
    cert,
  )
  copyFileSync(cert, popAuthPaths(dir).cert)
  copyFileSync(join(core, 'ca', 'ca.pem'), popAuthPaths(dir).ca)
  await cla(
    'core',
    'pop',
    'add',
    '--data',
    core,
    '--id',
    id,
    '--cert',
    cert,
    '--allow',
    '127.0.0.1/32',
    '--rsync-password-out',
    popRsyncPasswordFile(dir),
  )
  return dir
}

const popX = await enrol('pop-x')
const popY = await enrol('pop-y')
const popZ = await enrol('pop-z')

// the rsync daemon (config from the registry) and the POP API
const conf = join(root, 'rsyncd.conf')
const rsyncLog = join(root, 'rsyncd.log')
let rsyncPort = 0
const genConf = () =>
  cla(
    'core',
    'rsyncd-config',
    '--data',
    core,
    '--address',
    '127.0.0.1',
    '--port',
    String(rsyncPort),
    '--pid-file',
    join(root, 'rsyncd.pid'),
    '--log-file',
    rsyncLog,
    '--out',
    conf,
  )

/**
 * Starts a server on a free port and waits for its own readiness signal (not a port
 * probe: another test may grab the port between freePort() and listen); on an early exit
 * (port taken) it tries another port.
 */
async function startServer(
  spawnOn: (port: number) => Promise<{ c: ResultPromise }>, // wrapped: awaiting a ResultPromise waits for exit
  ready: (child: ResultPromise, port: number) => boolean,
): Promise<{ child: ResultPromise; port: number }> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort()
    const { c: child } = await spawnOn(port)
    children.push(child)
    let exited = false
    void child.then(() => (exited = true))
    for (let i = 0; i < 300 && !exited; i++) {
      if (ready(child, port)) return { child, port }
      await new Promise((r) => setTimeout(r, 100))
    }
    child.kill('SIGKILL')
  }
  throw new Error('server did not start')
}

const { readFileSync: readText, existsSync: exists } = await import('node:fs')
const rsyncd = await startServer(
  async (port) => {
    rsyncPort = port
    await genConf()
    // stdin must not be a socket (Node's pipes are socketpairs): rsync would think it runs from inetd
    return {
      c: execa('rsync', ['--daemon', '--no-detach', `--config=${conf}`], {
        reject: false,
        stdin: 'ignore',
      }),
    }
  },
  (_c, port) =>
    exists(rsyncLog) && readText(rsyncLog, 'utf8').includes(`listening on port ${port}\n`),
)
const daemon = rsyncd.child
let apiOut = ''
const popApi = await startServer(
  async (port) => {
    apiOut = ''
    const c = execa(CLI, ['core', 'pop-api', '--data', core, '--listen', `127.0.0.1:${port}`], {
      env: { ...env, CLAVITOR_LOG_LEVEL: 'info' }, // its 'POP API listening' line is the readiness signal

      reject: false,
    })
    c.stdout!.on('data', (d: Buffer) => (apiOut += d.toString()))
    return { c }
  },
  () => apiOut.includes('POP API listening'),
)
const api = popApi.child
const apiPort = popApi.port

const source = (id: string) => `rsync://clavitor-pop-${id}@127.0.0.1:${rsyncPort}/clavitor-store/`
const popSync = (dir: string, id: string, extra: string[] = [], extraEnv = {}) =>
  execa(
    CLI,
    [
      'pop',
      'sync',
      '--once',
      '--json',
      '--data',
      dir,
      '--id',
      id,
      '--core',
      `https://127.0.0.1:${apiPort}`,
      '--rsync-source',
      source(id),
      '--page-size',
      '15',
      ...extra,
    ],
    // detached: no controlling terminal, so rsync can never prompt for a password
    { env: { ...env, ...extraEnv }, reject: false, detached: true },
  )

t.test('the generated config and secrets', async (t) => {
  const { readFileSync } = await import('node:fs')
  const text = readFileSync(conf, 'utf8')
  t.match(text, /hosts allow = 127\.0\.0\.1\/32\n\s+hosts deny = \*/)
  t.match(text, /auth users = clavitor-pop-pop-x:ro, clavitor-pop-pop-y:ro, clavitor-pop-pop-z:ro/)
  t.match(text, new RegExp(`secrets file = ${rsyncdSecretsFile(core)}\\n`))
  t.match(text, /strict modes = yes/)
  t.match(text, /use chroot = yes/)
  t.equal(statSync(rsyncdSecretsFile(core)).mode & 0o777, 0o600)
  t.equal(statSync(popRsyncPasswordFile(popX)).mode & 0o777, 0o600)
})

t.test('plain http to another host is refused unless --insecure-plain-http', async (t) => {
  const args = [
    'pop',
    'sync',
    '--once',
    '--data',
    popX,
    '--id',
    'pop-x',
    '--rsync-source',
    source('pop-x'),
    '--rsync-timeout',
    '2',
  ]
  const r = await execa(CLI, [...args, '--core', 'http://192.0.2.1:9'], { env, reject: false })
  t.equal(r.exitCode, 2)
  t.match(
    r.stderr,
    /^clavitor: CLA_ERR_INVALID_OPTION: --core http:\/\/192\.0\.2\.1:9 is plain HTTP/,
  )
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line')
  // with the flag it gets past the check (and fails on the unreachable feed instead)
  const f = await execa(CLI, [...args, '--core', 'http://127.0.0.1:9', '--insecure-plain-http'], {
    env,
    reject: false,
  })
  t.equal(f.exitCode, 1)
  t.match(f.stderr, /CLA_ERR_SYNC_FEED/)
  t.same(popState(popX), { cursor: null, blobs: 0 })
})

t.test('wrong password: nothing fetched, cursor stays', async (t) => {
  const pw = popRsyncPasswordFile(popY)
  const { readFileSync } = await import('node:fs')
  const good = readFileSync(pw, 'utf8')
  t.teardown(() => writeFileSync(pw, good, { mode: 0o600 }))
  writeFileSync(pw, 'not-the-password\n', { mode: 0o600 })
  const r = await popSync(popY, 'pop-y')
  t.equal(r.exitCode, 1, 'exit 1')
  t.match(r.stderr, /CLA_ERR_SYNC_RSYNC_AUTH/)
  t.match(r.stderr, /auth failed/)
  t.same(popState(popY), { cursor: null, blobs: 0 })
})

t.test('no credentials (no password file, empty RSYNC_PASSWORD): nothing', async (t) => {
  const pw = popRsyncPasswordFile(popY)
  const { readFileSync } = await import('node:fs')
  const good = readFileSync(pw, 'utf8')
  rmSync(pw)
  t.teardown(() => writeFileSync(pw, good, { mode: 0o600 }))
  const r = await popSync(popY, 'pop-y', [], { RSYNC_PASSWORD: '' })
  t.equal(r.exitCode, 1, 'exit 1')
  t.match(r.stderr, /CLA_ERR_SYNC_RSYNC_AUTH/)
  t.same(popState(popY), { cursor: null, blobs: 0 })
  // anonymous (no user in the source): refused too
  const anon = await execa(
    'rsync',
    ['--list-only', `rsync://127.0.0.1:${rsyncPort}/clavitor-store/`],
    { reject: false, detached: true, env: { ...process.env, RSYNC_PASSWORD: '' } },
  )
  t.equal(anon.exitCode, 5, anon.stderr)
  t.match(anon.stderr, /auth failed/)
})

t.test('address outside hosts allow: nothing, even with the right password', async (t) => {
  const r = await popSync(popY, 'pop-y', ['--rsync-arg=--address=127.0.0.2'])
  t.equal(r.exitCode, 1, 'exit 1')
  t.match(r.stderr, /CLA_ERR_SYNC_RSYNC_AUTH/)
  // rsync 3.2+ hides a `list = no` module from a host it refuses ("Unknown module")
  t.match(r.stderr, /access denied|Unknown module/)
  t.match(r.stderr, /not in the POP's allowlist/)
  t.same(popState(popY), { cursor: null, blobs: 0 })
  const { readFileSync } = await import('node:fs')
  t.match(
    readFileSync(join(root, 'rsyncd.log'), 'utf8'),
    /127\.0\.0\.2/,
    'the daemon saw (and refused) the connection from 127.0.0.2',
  )
})

t.test('the enrolled POP converges over mTLS + authenticated rsync', async (t) => {
  const r = await popSync(popX, 'pop-x')
  t.equal(r.exitCode, 0, r.stderr.slice(-500))
  const out = JSON.parse(r.stdout) as { ok: boolean; sealed: number; lag_us: number }
  t.equal(out.ok, true)
  t.equal(out.sealed, N, 'every blob sealed')
  t.equal(out.lag_us, 0, 'caught up')
  const s = popState(popX)
  t.equal(s.blobs, N)
  t.ok(s.cursor, 'cursor advanced')
  // the core saw the report through the POP API
  const pops = JSON.parse((await cla('core', 'pops', '--data', core)).stdout) as Array<{
    id: string
    sync: { cursor: string | null } | null
  }>
  t.equal(pops.find((p) => p.id === 'pop-x')?.sync?.cursor, s.cursor, 'core knows the cursor')
  // pop-y, the same commands with its own password, converges too (after the refusals)
  const y = await popSync(popY, 'pop-y')
  t.equal(y.exitCode, 0, y.stderr)
  t.equal(popState(popY).blobs, N)
})

// Regression (issue 11, item 12): the rsync channel wrote nothing to the audit trail.
t.test('each rsync session is one audit row: POP, address, files, bytes, feed page', async (t) => {
  const r = await cla('core', 'rsync-audit', '--data', core, '--log', rsyncLog, '--json')
  const pass = JSON.parse(r.stdout) as { sessions: number; authFailures: number; denied: number }
  t.ok(pass.sessions >= 3, `sessions audited: ${r.stdout}`)
  const db = openDb(join(core, 'meta.db'))
  t.teardown(() => db.close())
  const rows = db
    .prepare(
      "SELECT actor, outcome, reason, ip, data FROM events WHERE kind = 'pop.rsync' ORDER BY id",
    )
    .all() as Array<{
    actor: string
    outcome: string
    reason: string | null
    ip: string
    data: string
  }>
  const x = rows.filter((e) => e.actor === 'pop-x' && e.outcome === 'allowed')
  const files = x.map(
    (e) => JSON.parse(e.data) as { files: number; bytes: number; feed_event: number },
  )
  t.equal(
    files.reduce((a, f) => a + f.files, 0),
    N,
    'pop-x: its sessions together sent every blob once (one row per page, not per file)',
  )
  t.ok(
    files.every((f) => f.bytes > 0 && Number.isInteger(f.feed_event)),
    'bytes and the feed request',
  )
  t.ok(x.every((e) => e.ip === '127.0.0.1'))
  t.ok(
    rows.some((e) => e.actor === 'pop-y' && e.reason === 'auth_failed'),
    "pop-y's wrong password is there",
  )
  t.ok(
    rows.some((e) => e.reason === 'host_denied' && e.ip === '127.0.0.2'),
    'the refused address is summarised',
  )
  const again = JSON.parse(
    (await cla('core', 'rsync-audit', '--data', core, '--log', rsyncLog, '--json')).stdout,
  ) as { sessions: number }
  t.equal(again.sessions, 0, 'nothing audited twice')
})

t.test('read-only: a push with valid credentials is refused', async (t) => {
  const f = join(root, 'push.cla')
  writeFileSync(f, 'x')
  const r = await execa(
    'rsync',
    [`--password-file=${popRsyncPasswordFile(popX)}`, f, source('pop-x')],
    { reject: false, detached: true },
  )
  t.not(r.exitCode, 0)
  t.match(r.stderr, /read only|read-only/i)
})

t.test('a removed POP loses rsync access with the next config', async (t) => {
  const dest = join(root, 'z-dest')
  mkdirSync(dest)
  const list = () =>
    execa(
      'rsync',
      [`--password-file=${popRsyncPasswordFile(popZ)}`, '--list-only', source('pop-z')],
      { reject: false, detached: true },
    )
  const before = await list()
  t.equal(before.exitCode, 0, `pop-z can read before removal: ${before.stderr}`)
  await cla('core', 'pop', 'remove', '--data', core, '--id', 'pop-z')
  const after = await list()
  t.equal(after.exitCode, 5, 'refused at once (its secret is gone)')
  t.match(after.stderr, /auth failed/)
  const g = await genConf()
  t.equal(g.exitCode, 0)
  const { readFileSync } = await import('node:fs')
  const text = readFileSync(conf, 'utf8')
  t.notMatch(text, /clavitor-pop-pop-z/, 'not in auth users')
  t.notMatch(readFileSync(rsyncdSecretsFile(core), 'utf8'), /pop-z/, 'not in the secrets file')
  t.equal((await list()).exitCode, 5)
})

t.test('rotation: core pop rsync-secret; the old password stops working', async (t) => {
  const pwFile = popRsyncPasswordFile(popX)
  const list = () =>
    execa('rsync', [`--password-file=${pwFile}`, '--list-only', source('pop-x')], {
      reject: false,
      detached: true,
    })
  t.equal((await list()).exitCode, 0, 'current password works')
  const r = await cla('core', 'pop', 'rsync-secret', '--data', core, '--id', 'pop-x', '--json')
  const out = JSON.parse(r.stdout) as { rsyncUser: string; rsyncPassword: string }
  t.equal(out.rsyncUser, 'clavitor-pop-pop-x')
  const old = await list()
  t.equal(old.exitCode, 5, 'old password refused')
  writeFileSync(pwFile, out.rsyncPassword + '\n', { mode: 0o600 })
  t.equal((await list()).exitCode, 0, 'new password works (no daemon restart)')
  const missing = await execa(
    CLI,
    ['core', 'pop', 'rsync-secret', '--data', core, '--id', 'pop-z'],
    { env, reject: false },
  )
  t.equal(missing.exitCode, 1, 'a removed POP gets no password')
  t.match(missing.stderr, /CLA_ERR_NOT_FOUND/)
})

t.test('core rsync-ssh-line', async (t) => {
  const key = join(root, 'pop_ed25519')
  await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key])
  const r = await cla(
    'core',
    'rsync-ssh-line',
    '--data',
    core,
    '--pop',
    'pop-x',
    '--key',
    `${key}.pub`,
  )
  const line = r.stdout.trim()
  t.ok(
    line.startsWith(
      `from="127.0.0.1/32",command="/usr/bin/rrsync -ro ${join(core, 'store')}",restrict ssh-ed25519 `,
    ),
    line,
  )
  t.ok(line.endsWith(' clavitor-pop-pop-x'), 'comment names the rsync user')
  const bad = await execa(
    CLI,
    ['core', 'rsync-ssh-line', '--data', core, '--pop', 'pop-x', '--key', conf],
    {
      env,
      reject: false,
    },
  )
  t.equal(bad.exitCode, 2, 'not a public key: exit 2')
})

t.test('teardown: the daemon stops', async (t) => {
  daemon.kill('SIGTERM')
  api.kill('SIGTERM')
  await daemon
  const a = await api
  t.equal(
    a.exitCode,
    0,
    `POP API clean shutdown: ${String(a.stderr).slice(-1500)} ${String(a.stdout).slice(-1500)}`,
  )
})
