// Core and POP in separate network namespaces joined by a veth pair (link-local
// 169.254.77.0/30 inside the namespaces only). The core side runs the rsync daemon (with
// the generated config) and the feed; the POP runs `clavitor pop sync --once`. The link is
// cut mid-transfer: the run fails with a network error and the cursor stays on sealed
// blobs; the link comes back and the next run completes.
import t from 'tap'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { BlobStore } from '../../lib/store/index.js'
import { renderRsyncdConfig } from '../../lib/core-sync/rsyncd-config.js'
import { getMeta, K_CURSOR } from '../../lib/pop-sync/state.js'
import { decodeCursor } from '../../lib/store/cursor.js'
import { indexOf, isRoot, randomP0, tempDir } from '../fixtures/sync.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const TS = new URL('../../scripts/clavitor-ts', import.meta.url).pathname
const SERVER = new URL('../fixtures/sync-core-server.ts', import.meta.url).pathname

const tag = randomBytes(3).toString('hex')
const NS_CORE = `clv-core-${tag}`
const NS_POP = `clv-pop-${tag}`
const VC = `vc${tag}`
const VP = `vp${tag}`
const CORE_IP = '169.254.77.1'
const POP_IP = '169.254.77.2'

function ip(...args: string[]): { ok: boolean; err: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8' })
  return { ok: r.status === 0, err: (r.stderr || '').trim() }
}

function setupNamespaces(): string | null {
  if (!isRoot) return 'needs root for ip netns'
  const steps: string[][] = [
    ['netns', 'add', NS_CORE],
    ['netns', 'add', NS_POP],
    ['link', 'add', VC, 'type', 'veth', 'peer', 'name', VP],
    ['link', 'set', VC, 'netns', NS_CORE],
    ['link', 'set', VP, 'netns', NS_POP],
    ['-n', NS_CORE, 'addr', 'add', `${CORE_IP}/30`, 'dev', VC],
    ['-n', NS_POP, 'addr', 'add', `${POP_IP}/30`, 'dev', VP],
    ['-n', NS_CORE, 'link', 'set', 'lo', 'up'],
    ['-n', NS_POP, 'link', 'set', 'lo', 'up'],
    ['-n', NS_CORE, 'link', 'set', VC, 'up'],
    ['-n', NS_POP, 'link', 'set', VP, 'up'],
  ]
  for (const s of steps) {
    const r = ip(...s)
    if (!r.ok) return `cannot make network namespaces here (ip ${s.join(' ')}: ${r.err})`
  }
  return null
}

function teardownNamespaces(): void {
  ip('netns', 'del', NS_CORE)
  ip('netns', 'del', NS_POP)
}

const why = setupNamespaces()
if (why) teardownNamespaces()
t.teardown(teardownNamespaces)

function popSync(
  popDir: string,
  extra: string[] = [],
): { child: ChildProcess; done: Promise<{ code: number | null; out: string; err: string }> } {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      NS_POP,
      CLI,
      'pop',
      'sync',
      '--once',
      '--data',
      popDir,
      '--id',
      'pop-n',
      '--core',
      `http://${CORE_IP}:8080`,
      '--insecure-plain-http', // the test feed server is plain HTTP (not the mTLS POP API)
      '--rsync-source',
      `rsync://${CORE_IP}:8730/clavitor-store/`,
      '--page-size',
      '200',
      '--rsync-timeout',
      '3',
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let out = ''
  let err = ''
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  const done = new Promise<{ code: number | null; out: string; err: string }>((r) =>
    child.on('close', (code) => r({ code, out, err })),
  )
  return { child, done }
}

t.test('link cut mid-transfer, restored, next run completes', { skip: why ?? false }, async (t) => {
  const dir = tempDir(t)
  const coreDir = join(dir, 'core')
  const popDir = join(dir, 'pop')
  const core = await BlobStore.init({ dataDir: coreDir, onWarning: () => {} })
  const puts = []
  for (let i = 0; i < 1500; i++) puts.push(core.put(randomP0(), randomBytes(2048)))
  await Promise.all(puts)
  core.db.prepare("INSERT INTO pops (id, created_at) VALUES ('pop-n', 1)").run()
  const pub = core.publicKey!
  await core.close()
  const pop = await BlobStore.init({
    dataDir: popDir,
    role: 'pop',
    trustKeys: [pub],
    onWarning: () => {},
  })
  await pop.close()

  // core side, inside its namespace: rsync daemon (generated config) and the feed
  const conf = join(dir, 'rsyncd.conf')
  writeFileSync(
    conf,
    renderRsyncdConfig({
      storeRoot: join(coreDir, 'store'),
      address: CORE_IP,
      port: 8730,
      pidFile: join(dir, 'rsyncd.pid'),
      logFile: join(dir, 'rsyncd.log'),
      uid: 'root',
      gid: 'root',
    }),
  )
  const daemon = spawn(
    'ip',
    ['netns', 'exec', NS_CORE, 'rsync', '--daemon', '--no-detach', `--config=${conf}`],
    { stdio: 'ignore' },
  )
  const server = spawn('ip', ['netns', 'exec', NS_CORE, TS, SERVER, coreDir, CORE_IP, '8080'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  t.teardown(() => {
    daemon.kill('SIGTERM')
    server.kill('SIGTERM')
  })
  await new Promise<void>((resolve, reject) => {
    server.stdout!.on('data', (d: Buffer) => d.toString().includes('listening') && resolve())
    server.once('exit', (c) => reject(new Error(`feed server exited ${c}`)))
  })

  // 1. a slow pull (bandwidth-limited rsync); cut the link once some pages are sealed
  // (rsync's I/O timeout 5 s instead of 30: the cut is noticed sooner; the test waits less)
  const first = popSync(popDir, ['--rsync-arg=--bwlimit=150', '--rsync-timeout=5'])
  await new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      if (/sealed ([1-9]\d*)/.test(d.toString())) {
        first.child.stdout!.off('data', onData)
        resolve()
      }
    }
    first.child.stdout!.on('data', onData)
  })
  // the next page's feed request is answered at once; its rsync takes seconds: cut then
  await new Promise((r) => setTimeout(r, 1000))
  t.ok(ip('-n', NS_CORE, 'link', 'set', VC, 'down').ok, 'link down')
  const guard = setTimeout(() => first.child.kill('SIGKILL'), 120_000) // a hang is a failure, not a test timeout
  const r1 = await first.done
  clearTimeout(guard)
  t.not(r1.code, 0, 'the cut run exits non-zero')
  t.match(
    r1.err,
    /CLA_ERR_SYNC_NETWORK: rsync (exit (10|12|30)|made no progress)/,
    `typed network failure: ${r1.err.trim().split('\n').pop()}`,
  )

  // nothing unverified counted: the cursor sits on a sealed blob, every indexed file verifies
  const mid = await BlobStore.open({ dataDir: popDir, onWarning: () => {} })
  const held = indexOf(mid).length
  const cursor = decodeCursor(getMeta(mid.db, K_CURSOR))
  t.ok(held > 0 && held < 1500, `${held} sealed before the cut`)
  t.ok(cursor && mid.bySeq(cursor.seq), 'the cursor names a blob sealed here')
  t.ok((await mid.verify()).ok)
  await mid.close()

  // 2. the link is back: the next run completes
  t.ok(ip('-n', NS_CORE, 'link', 'set', VC, 'up').ok, 'link up')
  const r2 = await popSync(popDir).done
  t.equal(r2.code, 0, `second run completes: ${r2.err.trim().split('\n').pop() ?? ''}`)
  t.match(r2.out, /sync done: sealed (\d+)/)
  const sealed2 = Number(/sync done: sealed (\d+)/.exec(r2.out)?.[1])
  t.equal(sealed2, 1500 - held, 'only the rest is fetched')

  const a = await BlobStore.open({ dataDir: coreDir, onWarning: () => {} })
  const b = await BlobStore.open({ dataDir: popDir, onWarning: () => {} })
  t.same(indexOf(b), indexOf(a), 'converged')
  t.ok((await b.verify()).ok)
  await a.close()
  await b.close()
})
