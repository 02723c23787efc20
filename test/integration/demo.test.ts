// `clavitor demo` (npm start) for real: the CLI in a child process brings up the fake
// Paddle, the core, the POP API, an rsync daemon and two POPs, and its report says every
// check passed. A second run stays up until SIGTERM and then stops everything (rsyncd too).
import t from 'tap'
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { get as httpGet } from 'node:http'
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import type { DemoReport } from '../../scripts/demo/demo.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const env: NodeJS.ProcessEnv = { ...process.env, CLAVITOR_LOG_LEVEL: 'info' }
delete env.CLAVITOR_PROTECTION
delete env.CLAVITOR_JSON
delete env.CLAVITOR_DEMO_EXIT

function clearFlags(dir: string): void {
  try {
    execFileSync('chattr', ['-R', '-i', '-a', dir], { stdio: 'ignore' })
  } catch {
    // nothing sealed, or no chattr
  }
}

function tempRoot(): string {
  const root = mkdtempSync(join(tmpdir(), 'cla-demo-test-'))
  t.teardown(() => {
    clearFlags(root)
    rmSync(root, { recursive: true, force: true })
  })
  return root
}

function parses(s: string): boolean {
  try {
    JSON.parse(s)
    return true
  } catch {
    return false
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

t.test('demo --exit-after-report --json: every check passes', async (t) => {
  const dir = join(tempRoot(), 'data')
  const r = await execa(CLI, ['demo', '--exit-after-report', '--json', '--data', dir], {
    env,
    reject: false,
    timeout: 90_000,
  })
  t.equal(r.exitCode, 0, r.exitCode === 0 ? 'exit 0' : r.stderr)
  const rep = JSON.parse(r.stdout) as DemoReport
  t.equal(rep.ok, true, 'report ok')
  t.equal(rep.data_dir, dir)
  t.ok(
    rep.checks.every((c) => c.ok),
    rep.checks.map((c) => `${c.ok ? 'ok' : 'FAILED'} ${c.name}: ${c.detail}`).join('\n'),
  )

  // billing: the subscription made through Billing became a Paddle subscription, active
  t.equal(rep.billing.subscription.status, 'active')
  t.equal(rep.billing.subscription.state, 'synced')
  t.match(rep.billing.subscription.paddle_id, /^sub_/)
  t.match(
    rep.billing.card,
    { checkout_url: /^https:\/\/\S+\?_ptxn=txn_/, status: 'active' },
    'a card checkout link, paid at the fake, linked',
  )
  t.match(r.stdout + r.stderr, /card checkout: .*checkout https:\/\/\S+_ptxn=txn_/)
  t.equal(rep.billing.pending_dual_writes, 0)

  // two POPs converged on the core's store, every WL3 looked up and matched on both
  t.equal(rep.pops.length, 2)
  t.same(
    rep.pops.map((p) => p.id),
    ['pop-a', 'pop-b'],
  )
  for (const p of rep.pops) {
    t.ok(p.converged, `${p.id} converged`)
    t.equal(p.blobs, rep.core.blobs, `${p.id} holds every core blob`)
    t.equal(p.lag_us, 0, `${p.id} lag 0`)
    t.ok(p.cursor, `${p.id} has a cursor`)
    t.equal(p.core_view?.cursor, p.cursor, "the core recorded the POP's report")
    t.equal(p.lookups.failed, 0)
    t.equal(p.lookups.ok, rep.credentials.p0s)
  }
  t.equal(rep.credentials.p0s, 5)
  t.equal(rep.credentials.registrations, 6)
  t.equal(
    rep.core.blobs,
    8,
    '6 WL3 versions, the audit anchor, and the version the long-poll step sends to the POPs',
  )
  t.equal(rep.lookups.total, 10)
  t.equal(rep.lookups.ok, 10)
  t.same(rep.lookups.failures, [])

  // audit chain, admin setup link, metrics, removal hint
  t.equal(rep.audit.ok, true)
  t.ok(rep.audit.anchors >= 1)
  t.equal(rep.audit.pops_ok, true)
  t.match(rep.core.admin_setup_url, /^http:\/\/localhost:\d+\/admin\/setup\?token=[A-Za-z0-9_-]+/)
  t.match(rep.core.metrics_url, /^http:\/\/localhost:\d+\/metrics$/)
  t.match(rep.core.rsync_url, /^rsync:\/\/127\.0\.0\.1:\d+\/clavitor-store\/$/)
  t.equal(rep.remove_command, `chattr -R -i -a ${dir} && rm -rf ${dir}`)

  // progress on stderr, one ✓ line per step, none failed
  const lines = r.stderr.split('\n').filter((l) => /^[✓✗] /.test(l))
  t.equal(lines.length, rep.steps.length, 'one progress line per step')
  t.notOk(
    lines.some((l) => l.startsWith('✗')),
    'no failed step',
  )
  t.ok(
    rep.steps.every((s) => s.ok && s.ms >= 0),
    'steps recorded with timings',
  )

  // the rsync daemon ran with per-POP users and is gone after the exit
  const conf = readFileSync(join(dir, 'rsyncd', 'rsyncd.conf'), 'utf8')
  t.match(conf, /auth users = clavitor-pop-pop-a:ro, clavitor-pop-pop-b:ro/)
  t.match(conf, /hosts allow = 127\.0\.0\.1\/32/)
  const log = readFileSync(join(dir, 'rsyncd', 'rsyncd.log'), 'utf8')
  t.match(log, /from clavitor-pop-pop-a@/, 'pop-a pulled as its own rsync user')
  t.match(log, /from clavitor-pop-pop-b@/, 'pop-b pulled as its own rsync user')
  t.notOk(existsSync(join(dir, 'rsyncd', 'rsyncd.pid')), 'rsyncd stopped (its pid file is gone)')
})

t.test(
  'demo keeps running: the admin setup page answers, a new credential reaches both POPs, SIGTERM closes everything',
  async (t) => {
    const dir = join(tempRoot(), 'data')
    const child = spawn(CLI, ['demo', '--json', '--sync-every', '1', '--data', dir], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    t.teardown(() => {
      child.kill('SIGKILL')
    })
    let out = ''
    let err = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((r) => child.on('exit', (c) => r(c)))
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no "Running" line:\n${out}\n${err}`)),
        90_000,
      )
      const check = () => {
        // the report (stdout) and the "Running" line (stderr) arrive on two pipes
        if (err.includes('Ctrl-C stops everything') && parses(out)) {
          clearTimeout(timer)
          resolve()
        }
      }
      child.stderr.on('data', check)
      child.stdout.on('data', check)
      void exited.then(() => {
        clearTimeout(timer)
        reject(new Error(`exited early:\n${out}\n${err}`))
      })
    })
    const rep = JSON.parse(out) as DemoReport
    t.equal(rep.ok, true)
    const port = Number(/^http:\/\/localhost:(\d+)$/.exec(rep.core.url)?.[1])
    t.ok(port > 0, 'core URL on localhost')

    // the one-time setup link opens the enrollment page (Host: localhost, the WebAuthn origin)
    const setup = new URL(rep.core.admin_setup_url!)
    const page = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      httpGet(
        {
          host: '127.0.0.1',
          port,
          path: setup.pathname + setup.search,
          headers: { host: `localhost:${port}` },
        },
        (res) => {
          let body = ''
          res.setEncoding('utf8')
          res.on('data', (c: string) => (body += c))
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }))
        },
      ).on('error', reject)
    })
    t.equal(page.status, 200, 'the setup page answers')
    t.match(page.body, /<html/i)
    const anonymous = await fetch(`http://127.0.0.1:${port}/metrics`)
    t.equal(anonymous.status, 401, 'core /metrics is not anonymous')
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`, {
      headers: { authorization: `Bearer ${rep.core.metrics_token}` },
    })
    t.equal(metrics.status, 200, 'core /metrics answers with the printed token')
    t.match(await metrics.text(), /clavitor_/)

    // a credential registered now (the printed vault key, real HTTP) reaches both POPs
    const p0 = randomBytes(16).toString('hex')
    const wl3 = randomBytes(321)
    const reg = await fetch(`http://127.0.0.1:${port}/api/v1/credentials/register`, {
      method: 'POST',
      headers: { authorization: `Bearer ${rep.vault.api_key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ p0, wl3: wl3.toString('base64') }),
    })
    t.equal(reg.status, 201, 'registered with the printed key')
    await reg.arrayBuffer()
    for (const pop of rep.pops) {
      const end = Date.now() + 30_000
      let got: Buffer | null = null
      while (Date.now() < end) {
        const r = await fetch(`${pop.url}/api/v1/wl3/${p0}`)
        const b = Buffer.from(await r.arrayBuffer())
        if (r.status === 200) {
          got = b
          break
        }
        await new Promise((r) => setTimeout(r, 200))
      }
      t.ok(got?.equals(wl3), `${pop.id} serves the new credential after its next pull`)
    }

    const pid = Number(readFileSync(join(dir, 'rsyncd', 'rsyncd.pid'), 'utf8').trim())
    t.ok(alive(pid), 'rsyncd runs')
    child.kill('SIGTERM')
    t.equal(await exited, 0, `clean exit on SIGTERM ${err}`)
    t.notOk(alive(pid), 'rsyncd stopped')
    t.notOk(existsSync(join(dir, 'rsyncd', 'rsyncd.pid')), 'its pid file is gone')
    t.match(err, /remove it with:\s+chattr -R -i -a \S+ && rm -rf \S+/)
    await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'the core is closed')
  },
)

t.test('demo --data refuses a folder that is not empty (exit 2)', async (t) => {
  const root = tempRoot()
  writeFileSync(join(root, 'something'), 'x')
  const r = await execa(CLI, ['demo', '--data', root, '--exit-after-report'], {
    env,
    reject: false,
  })
  t.equal(r.exitCode, 2)
  t.match(r.stderr, /CLA_ERR_INVALID_OPTION: --data .* is not empty/)
})

t.test('a step that fails prints ✗, closes what started and exits 1 (rsync missing)', async (t) => {
  const root = tempRoot()
  const dir = join(root, 'data')
  // a PATH with node, openssl and chattr but no rsync
  const bin = join(root, 'bin')
  mkdirSync(bin)
  for (const tool of [
    'bash',
    'sh',
    'env',
    'dirname',
    'readlink',
    'node',
    'openssl',
    'flock',
    'chattr',
    'lsattr',
  ]) {
    const found = (await execa('bash', ['-c', `command -v ${tool}`], { reject: false })).stdout
    if (found) symlinkSync(found, join(bin, tool))
  }
  const r = await execa(CLI, ['demo', '--exit-after-report', '--json', '--data', dir], {
    env: { ...env, PATH: bin },
    reject: false,
    timeout: 90_000,
  })
  t.equal(r.exitCode, 1, r.exitCode === 1 ? 'exit 1' : r.stderr)
  const rep = JSON.parse(r.stdout) as {
    ok: boolean
    error: string
    steps: Array<{ ok: boolean; title: string }>
  }
  t.equal(rep.ok, false)
  t.match(rep.error, /rsync daemon.*cannot run rsync: not found/)
  const last = rep.steps[rep.steps.length - 1]!
  t.equal(last.title, 'rsync daemon')
  t.equal(last.ok, false)
  t.match(r.stderr, /✗ +\d+\. rsync daemon: /)
  t.match(r.stderr, /remove it with: chattr -R -i -a /)
})

t.test('the rsync daemon does not outlive a demo killed with SIGKILL', async (t) => {
  const dir = join(tempRoot(), 'data')
  const child = spawn(CLI, ['demo', '--data', dir], { env, stdio: ['ignore', 'pipe', 'ignore'] })
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  let out = ''
  const exited = new Promise<void>((r) => child.on('exit', () => r()))
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no "Running" line:\n${out}`)), 90_000)
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      if (out.includes('Ctrl-C stops everything')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  const pid = Number(readFileSync(join(dir, 'rsyncd', 'rsyncd.pid'), 'utf8').trim())
  t.ok(alive(pid), 'rsyncd runs')
  child.kill('SIGKILL')
  await exited
  const end = Date.now() + 10_000
  while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
  t.notOk(alive(pid), 'rsyncd stopped when the demo died')
})
