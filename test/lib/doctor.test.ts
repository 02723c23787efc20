import t from 'tap'
import { createServer } from 'node:http'
import { mkdirSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import { caPaths } from '../../lib/auth/ca.js'
import { openDb } from '../../lib/db/open.js'
import { initReplica, renderLitestreamConfig } from '../../lib/db/replica.js'
import {
  checkCertificates,
  checkClockSkew,
  checkDisk,
  checkReplica,
  checkRsync,
  checkSealing,
  runDoctor,
} from '../../lib/doctor.js'

const isRoot = process.getuid?.() === 0

t.test('rsync is found and its version read', async (t) => {
  const c = await checkRsync()
  t.equal(c.verdict, 'ok')
  t.match(c.detail, /^rsync \d+\.\d+\.\d+$/)
})

t.test(
  'sealing probe on this filesystem',
  { skip: isRoot ? false : 'needs root for chattr' },
  async (t) => {
    const c = await checkSealing(t.testdir())
    t.equal(c.verdict, 'ok', c.detail)
  },
)

t.test('disk space warns below the threshold', async (t) => {
  const dir = t.testdir()
  t.equal(checkDisk(dir, 1).verdict, 'ok')
  t.equal(checkDisk(dir, Number.MAX_SAFE_INTEGER).verdict, 'warn')
  t.equal(checkDisk(dir + '/missing').verdict, 'fail')
})

t.test('certificate expiry: ok, soon, expired', async (t) => {
  const dir = t.testdir()
  t.equal(checkCertificates(dir)[0]!.verdict, 'skip', 'no certificates')
  const ca = caPaths(dir)
  mkdirSync(ca.dir, { recursive: true })
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      ca.key,
      '-out',
      ca.cert,
      '-days',
      '10',
      '-subj',
      '/CN=test',
    ],
    { stdio: 'ignore' },
  )
  const now = Date.now()
  t.equal(checkCertificates(dir, 5, now)[0]!.verdict, 'ok', '10 days left, warn at 5')
  t.equal(checkCertificates(dir, 30, now)[0]!.verdict, 'warn', '10 days left, warn at 30')
  const later = checkCertificates(dir, 30, now + 11 * 86_400_000)[0]!
  t.equal(later.verdict, 'fail')
  t.match(later.detail, /expired/)
})

t.test('clock skew from the core Date header', async (t) => {
  let offsetMs = 0
  const server = createServer((_req, res) => {
    res.sendDate = false
    res.setHeader('date', new Date(Date.now() + offsetMs).toUTCString())
    res.end('{}')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  t.teardown(() => server.close())
  const url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  t.equal((await checkClockSkew(url, 30)).verdict, 'ok')
  offsetMs = 120_000
  const skewed = await checkClockSkew(url, 30)
  t.equal(skewed.verdict, 'fail')
  t.match(skewed.detail, /skew against the core: 1[12]\d\.\d s/)
  t.equal((await checkClockSkew('http://127.0.0.1:9', 30)).verdict, 'fail', 'unreachable core')
})

// the CLI's exit code: test/integration/doctor-cli.test.ts
t.test('runDoctor runs every check', async (t) => {
  const dir = t.testdir()
  const r = await runDoctor({ dataDir: dir, minFreeBytes: 1 })
  t.equal(r.ok, true)
  t.same(
    r.checks.map((c) => c.name),
    ['modes', 'rsync', 'chattr', 'disk', 'certificates', 'replica', 'clock'],
  )
})

t.test("meta.db's replica: skipped when not set up, failed when behind", async (t) => {
  const dir = t.testdir()
  t.match(await checkReplica(dir), { verdict: 'skip', detail: /core replica init/ })
  const db = openDb(join(dir, 'meta.db'))
  db.close()
  initReplica(dir, { replica: join(dir, 'replica') })
  // configured, but Litestream never ran: nothing replicated
  t.match(await checkReplica(dir, 60), {
    name: 'replica',
    verdict: 'fail',
    detail: /last replicated never\); is clavitor-litestream running\?/,
  })
})

t.test('the Litestream config: targets checked, the sync interval is the RPO', async (t) => {
  const y = renderLitestreamConfig('/var/lib/clavitor/meta.db', {
    replica: '/mnt/backup/meta',
    syncIntervalMs: 500,
  })
  t.match(y, /- path: "\/var\/lib\/clavitor\/meta.db"/)
  t.match(y, /- url: "file:\/\/\/mnt\/backup\/meta"/)
  t.match(y, /sync-interval: 500ms/)
  t.match(
    renderLitestreamConfig('/d/meta.db', { replica: 's3://bucket/clavitor' }),
    /url: "s3:\/\/bucket\/clavitor"/,
  )
  t.throws(() => renderLitestreamConfig('/d', { replica: 'backup/meta' }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
  t.throws(() => renderLitestreamConfig('/d', { replica: '/x', syncIntervalMs: 5 }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
})
