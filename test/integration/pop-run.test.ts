// `clavitor pop run`: scheduler + lookup server in one process; SIGTERM mid-sync stops
// cleanly (exit 0, nothing half-done counted); the next start catches up and serves.
import t from 'tap'
import { spawn } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { connect, createServer } from 'node:net'
import { join } from 'node:path'
import { BlobStore } from '../../lib/store/index.js'
import { decodeCursor } from '../../lib/store/cursor.js'
import { getMeta, K_CURSOR } from '../../lib/pop-sync/state.js'
import { coreAndEmptyPop, randomP0 } from '../fixtures/sync.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise((r) => srv.close(r))
  return port
}

async function health(url: string): Promise<Record<string, unknown> | null> {
  try {
    const r = await fetch(url + '/healthz')
    return (await r.json()) as Record<string, unknown>
  } catch {
    return null
  }
}

async function waitFor<T>(
  fn: () => Promise<T | null | undefined | false>,
  ms = 60_000,
): Promise<T> {
  const end = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v) return v
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 100))
  }
}

type TestCore = Awaited<ReturnType<typeof coreAndEmptyPop>>['core']

/** `clavitor pop run` against `core`, on a free port; killed at the test's end. */
async function startPopRun(
  t: { teardown(fn: () => unknown): void },
  core: TestCore,
  popDir: string,
  extra: string[],
) {
  const port = await freePort()
  const child = spawn(
    CLI,
    [
      'pop',
      'run',
      '--data',
      popDir,
      '--id',
      'pop-r',
      '--core',
      core.url,
      '--rsync-source',
      core.root,
      '--listen',
      `127.0.0.1:${port}`,
      '--page-size',
      '100',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, CLAVITOR_LOG_LEVEL: 'warn' } },
  )
  let err = ''
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()))
  // 'close': the exit code once stderr is read to its end
  const exited = new Promise<number | null>((r) => child.on('close', (c) => r(c)))
  t.teardown(() => {
    child.kill('SIGKILL')
  })
  return { child, port, url: `http://127.0.0.1:${port}`, exited, err: () => err }
}

/** The sum of clavitor_lookups_total's hit and miss series in a /metrics text. */
function lookupsCounted(text: string): number {
  const lines = text.matchAll(
    /^clavitor_lookups_total\{(?=[^}]*result="(?:hit|miss)")[^}]*\} (\d+)$/gm,
  )
  return [...lines].reduce((n, c) => n + Number(c[1]), 0)
}

t.test('pop run: SIGTERM mid-sync, restart, serve', async (t) => {
  const { core, popDir } = await coreAndEmptyPop(t, 1200, 'pop-r')
  const p0 = randomP0()
  await core.addBlobs(2, [p0])

  const start = (extra: string[]) => startPopRun(t, core, popDir, extra)

  // 1. slow first run (bandwidth-limited rsync); SIGTERM while it syncs
  const a = await start(['--rsync-arg=--bwlimit=300'])
  await waitFor(async () => {
    const h = await health(a.url)
    return h && h.syncing === true && (h.blobs as number) > 0 ? h : null
  })
  a.child.kill('SIGTERM')
  const code = await a.exited
  t.equal(code, 0, `clean exit on SIGTERM mid-sync ${a.err()}`)
  const mid = await BlobStore.open({ dataDir: popDir, onWarning: () => {} })
  const n = (mid.db.prepare('SELECT count(*) FROM blobs').pluck().get() as number) ?? 0
  const cur = decodeCursor(getMeta(mid.db, K_CURSOR))
  t.ok(n > 0 && n < 1202, `${n} sealed before the stop`)
  t.ok(cur === null || mid.bySeq(cur.seq), 'cursor on a sealed blob')
  t.ok((await mid.verify()).ok, 'nothing half-done')
  await mid.close()

  // 2. restart: runs at start, catches up, serves lookups (and /metrics behind its token)
  const tokenFile = join(popDir, 'metrics.token')
  writeFileSync(tokenFile, 'metrics-token-for-the-test\n', { mode: 0o600 })
  const b = await start(['--metrics-token-file', tokenFile, '--lookup-cache-mb', '1'])
  const h = await waitFor(async () => {
    const x = await health(b.url)
    return x && x.blobs === 1202 && x.syncing === false && x.lag_us === 0 ? x : null
  })
  t.equal(h.pop_id, 'pop-r')
  const res = await fetch(`${b.url}/api/v1/wl3/${p0}`)
  t.equal(res.status, 200)
  t.equal(res.headers.get('etag'), `"${core.store.latest(p0)!.sha256}"`)
  t.same(Buffer.from(await res.arrayBuffer()), await core.store.readPayload(core.store.latest(p0)!))
  t.equal((await fetch(`${b.url}/api/v1/wl3/${randomP0()}`)).status, 404)
  t.equal((await fetch(`${b.url}/metrics`)).status, 401, '/metrics is not anonymous')
  const m = await fetch(`${b.url}/metrics`, {
    headers: { authorization: 'Bearer metrics-token-for-the-test' },
  })
  t.equal(m.status, 200, '/metrics with the token of --metrics-token-file')
  const text = await m.text()
  t.match(text, /clavitor_blobs\{role="pop"\} 1202/)
  // the cache bound of --lookup-cache-mb, and the lookup above (a miss, or a hit when the
  // prefetch had already read that P0)
  t.match(text, /^clavitor_lookup_cache_max_bytes\{role="pop"\} 1048576$/m)
  t.equal(lookupsCounted(text), 1, 'one lookup counted')
  t.match(text, /^clavitor_lookups_total\{(?=[^}]*result="not_found")[^}]*\} 1$/m, 'the 404 apart')
  const again = await fetch(`${b.url}/metrics`, {
    headers: { authorization: 'Bearer metrics-token-for-the-test' },
  })
  t.equal(
    lookupsCounted(await again.text()),
    1,
    'still one at the next scrape: nothing counted twice',
  )
  b.child.kill('SIGTERM')
  t.equal(await b.exited, 0)
})

t.test('pop run: a second SIGTERM while stopping exits at once', async (t) => {
  const { core, popDir } = await coreAndEmptyPop(t, 3, 'pop-r')
  const a = await startPopRun(t, core, popDir, [])
  await waitFor(async () => {
    const h = await health(a.url)
    return h && h.blobs === 3 && h.syncing === false ? h : null
  })
  // a client in the middle of its request holds the server's close (up to the request
  // time limit, 30 s): the stop cannot finish while it is there
  const slow = connect(a.port, '127.0.0.1')
  t.teardown(() => slow.destroy())
  await new Promise((r) => slow.once('connect', r))
  slow.write('GET /healthz HTTP/1.1\r\nHost: pop\r\n')
  // a request on another connection answered after it: the server has read those bytes
  t.ok(await health(a.url))
  a.child.kill('SIGTERM')
  // stopping: the server no longer takes connections
  await waitFor(async () => !(await health(a.url)))
  // the second signal, again until it lands after the first's second of grace
  let code: number | null | undefined
  void a.exited.then((c) => (code = c))
  await waitFor(async () => {
    if (code === undefined) a.child.kill('SIGTERM')
    return code !== undefined
  })
  t.equal(await a.exited, 1, 'the second signal ends it, unfinished')
  t.match(a.err(), /CLA_ERR_STOP_FORCED: SIGTERM while stopping/)
  const again = await BlobStore.open({ dataDir: popDir, onWarning: () => {} })
  t.teardown(() => again.close())
  t.ok((await again.verify()).ok, 'nothing lost: the store opens and verifies')
  t.equal(again.index.count(), 3)
})
