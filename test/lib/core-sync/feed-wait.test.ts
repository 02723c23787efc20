// The feed's long-poll (GET /pop/v1/feed?wait=, lib/core-sync/feed-wait.ts): answered as
// soon as a blob past the cursor commits, in this process or in another one (the publish
// hint file); empty at its timeout; one wait per POP; bounded; ended by a hang-up or by
// the server closing.
import t from 'tap'
import { execFile } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import Fastify from 'fastify'
import { BlobStore } from '../../../lib/store/index.js'
import { FeedWaiters } from '../../../lib/core-sync/feed-wait.js'
import { parseWait } from '../../../lib/core-sync/feed.js'
import { syncRoutes } from '../../../server/routes/sync.js'
import { errorResponse } from '../../../lib/errors.js'
import { encodeCursor } from '../../../lib/store/cursor.js'
import type { FeedPage } from '../../../lib/core-sync/feed.js'
import { randomP0, startCore, tempDir } from '../../fixtures/sync.js'
import { REPO } from '../../fixtures/store/helpers.js'

const run = promisify(execFile)

async function feed(
  url: string,
  q: Record<string, string>,
  pop = 'pop-a',
  signal?: AbortSignal,
): Promise<{ status: number; body: FeedPage & { error?: { code: string } } }> {
  const res = await fetch(`${url}/pop/v1/feed?${new URLSearchParams(q)}`, {
    headers: { 'x-pop-id': pop },
    ...(signal ? { signal } : {}),
  })
  return { status: res.status, body: (await res.json()) as FeedPage & { error?: { code: string } } }
}

t.test('a wait at the head is answered by the next commit, with that blob', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const [first] = await core.addBlobs(1)
  const cursor = encodeCursor(first!)
  const waiting = feed(core.url, { cursor, wait: '30' })
  await new Promise((r) => setTimeout(r, 100)) // let the request arrive
  const [second] = await core.addBlobs(1)
  const r = await waiting
  t.equal(r.status, 200)
  t.same(
    r.body.items.map((i) => i.seq),
    [second!.seq],
    'the page holds the new blob',
  )
  t.equal(r.body.checkpoint.seq, second!.seq, 'and a checkpoint covering it')
})

t.test('a wait behind the head answers at once; wait=0 never waits', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  await core.addBlobs(2)
  const r = await feed(core.url, { wait: '30' })
  t.equal(r.body.items.length, 2, 'the page as it stands')
  const head = encodeCursor(r.body.head!)
  const r0 = await feed(core.url, { cursor: head, wait: '0' })
  t.same(r0.body.items, [], 'wait=0: the empty page at once')
})

t.test('a wait ends empty at its timeout, with a fresh checkpoint of the head', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const [b] = await core.addBlobs(1)
  const started = Date.now()
  const r = await feed(core.url, { cursor: encodeCursor(b!), wait: '1' })
  t.equal(r.status, 200)
  t.same(r.body.items, [])
  t.equal(r.body.more, false)
  t.equal(r.body.checkpoint.seq, b!.seq, 'the checkpoint covers the head')
  t.ok(Date.now() - started >= 900, 'it waited (about a second)')
})

t.test('invalid waits are refused (400)', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  for (const wait of ['-1', '51', 'x', '1.5', '99999']) {
    const r = await feed(core.url, { wait })
    t.equal(r.status, 400, `wait=${wait}`)
    t.equal(r.body.error?.code, 'CLA_ERR_INVALID_INPUT')
  }
  t.equal(parseWait(undefined), 0)
  t.equal(parseWait('50'), 50_000)
})

t.test('one wait per POP: a second wait of the same POP ends the first', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const [b] = await core.addBlobs(1)
  const cursor = encodeCursor(b!)
  const first = feed(core.url, { cursor, wait: '30' })
  await new Promise((r) => setTimeout(r, 100))
  const second = feed(core.url, { cursor, wait: '30' })
  const r1 = await first
  t.same(r1.body.items, [], 'the first wait answered empty')
  const [c] = await core.addBlobs(1)
  const r2 = await second
  t.same(
    r2.body.items.map((i) => i.seq),
    [c!.seq],
    'the second one is the one woken',
  )
})

/** A feed app holding at most `maxWaiters` waits; the POP id from `x-pop-id`. */
async function waitApp(
  t: { teardown: (fn: () => unknown) => void },
  maxWaiters: number,
  maxWaitS?: number,
) {
  const dataDir = join(tempDir(t), 'core')
  const store = await BlobStore.init({ dataDir, protection: 'off' })
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => {
    const { status, body } = errorResponse(err)
    return reply.status(status).send(body)
  })
  app.addHook('onRequest', async (req) => {
    req.popId = req.headers['x-pop-id'] as string
  })
  await app.register(syncRoutes, {
    core: { db: store.db, store },
    maxWaiters,
    ...(maxWaitS !== undefined ? { maxWaitS } : {}),
  })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => {
    await app.close()
    await store.close()
  })
  return { app, url }
}

t.test('waiters are bounded: one more is refused with CLA_ERR_SYNC_BUSY (503)', async (t) => {
  const { app, url } = await waitApp(t, 1)
  const held = feed(url, { wait: '30' }, 'pop-a')
  await new Promise((r) => setTimeout(r, 100))
  const r = await feed(url, { wait: '30' }, 'pop-b')
  t.equal(r.status, 503)
  t.equal(r.body.error?.code, 'CLA_ERR_SYNC_BUSY')
  // closing the app answers the held wait at once (preClose): not an empty page, which a
  // POP takes for a core without the long-poll, but 503 (ask again in a moment)
  const closing = app.close()
  const h = await held
  t.equal(h.status, 503, 'the held wait answered when the server closed')
  t.equal(h.body.error?.code, 'CLA_ERR_SYNC_BUSY')
  await closing
})

t.test('a wait longer than the server holds is shortened, not refused', async (t) => {
  const { url } = await waitApp(t, 10, 1)
  const r = await feed(url, { wait: '45' })
  t.equal(r.status, 200, "answered (empty) after the server's own 1 s, not 400")
  t.same(r.body.items, [])
})

t.test('a POP that hangs up mid-wait frees its place at once', async (t) => {
  const { url } = await waitApp(t, 1)
  const ac = new AbortController()
  const hungUp = feed(url, { wait: '30' }, 'pop-a', ac.signal).catch(() => 'aborted')
  await new Promise((r) => setTimeout(r, 100))
  ac.abort()
  t.equal(await hungUp, 'aborted')
  // the only place is free again long before pop-a's 30 s: pop-b's wait is taken (the
  // server learns of the hang-up a moment later: ask again until then, with a deadline)
  const deadline = Date.now() + 10_000
  let r = await feed(url, { wait: '1' }, 'pop-b')
  while (r.status === 503 && Date.now() < deadline) {
    await new Promise((w) => setTimeout(w, 50))
    r = await feed(url, { wait: '1' }, 'pop-b')
  }
  t.equal(r.status, 200, "pop-b's wait was taken")
})

t.test('a POP that hangs up leaves no waiter behind', async (t) => {
  const dataDir = join(tempDir(t), 'core')
  const store = await BlobStore.init({ dataDir, protection: 'off' })
  t.teardown(() => store.close())
  const waiters = new FeedWaiters({ db: store.db, dataDir, store })
  t.teardown(() => waiters.close())
  const ac = new AbortController()
  const w = waiters.wait('pop-a', null, 30_000, ac.signal)
  t.equal(waiters.size, 1)
  ac.abort()
  t.equal(await w, 'gone')
  t.equal(waiters.size, 0, 'removed at once')
  // and a burst of commits reads the head once per wake-up, for every waiter
  const many = ['a', 'b', 'c'].map((p) => waiters.wait(`pop-${p}`, null, 30_000))
  await Promise.all([
    store.put(randomP0(), Buffer.from('1')),
    store.put(randomP0(), Buffer.from('2')),
    store.put(randomP0(), Buffer.from('3')),
  ])
  t.same(await Promise.all(many), ['new', 'new', 'new'])
  t.equal(waiters.woken, 3)
  t.equal(waiters.headReads, 1, 'one head read woke all three waiters')
})

t.test('a commit by another process wakes the wait (the publish hint file)', async (t) => {
  const dataDir = join(tempDir(t), 'core')
  // this process serves the feed and never writes: the writer is the CLI below
  const store = await BlobStore.init({ dataDir, protection: 'off' })
  const app = Fastify()
  app.addHook('onRequest', async (req) => {
    req.popId = 'pop-a'
  })
  await app.register(syncRoutes, { core: { db: store.db, store } })
  const url = await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(async () => {
    await app.close()
    await store.close()
  })
  // the longest wait: the CLI's start is slow on a loaded machine
  const waiting = feed(url, { wait: '50' })
  await new Promise((r) => setTimeout(r, 100))
  const payload = join(dataDir, '..', 'payload')
  writeFileSync(payload, 'written elsewhere')
  const p0 = randomP0()
  const { stdout } = await run(join(REPO, 'scripts/clavitor'), [
    'store',
    'put',
    '--data',
    dataDir,
    '--protection',
    'off',
    '--p0',
    p0,
    '--file',
    payload,
  ])
  const r = await waiting
  t.same(
    r.body.items.map((i) => i.p0),
    [p0],
    'woken with the blob the other process wrote',
  )
  t.equal(r.body.items[0]!.seq, (JSON.parse(stdout) as { seq: number }).seq)
})
