// The sync routes in a bare Fastify app; a tiny test hook stands in for the POP API's
// mTLS/signature auth and sets request.popId from a header.
import t from 'tap'
import { join } from 'node:path'
import Fastify from 'fastify'
import { BlobStore } from '../../lib/store/store.js'
import { verifyCheckpoint } from '../../lib/store/checkpoint.js'
import { errorResponse } from '../../lib/errors.js'
import { syncRoutes } from '../../server/routes/sync.js'

t.test('GET /pop/v1/feed and POST /pop/v1/report', async (t) => {
  const store = await BlobStore.init({ dataDir: join(t.testdir(), 'core'), protection: 'off' })
  t.teardown(() => store.close())
  const db = store.db
  db.prepare("INSERT INTO pops (id, created_at) VALUES ('pop-a', 1)").run()
  for (let i = 1; i <= 3; i++) await store.put('cd'.repeat(16), Buffer.from(`wl3 ${i}`))
  const app = Fastify()
  app.setErrorHandler((err, _req, reply) => {
    const { status, body } = errorResponse(err)
    return reply.status(status).send(body)
  })
  app.addHook('onRequest', async (req) => {
    const id = req.headers['x-pop-id']
    if (typeof id === 'string') req.popId = id
  })
  await app.register(syncRoutes, { core: { db, store } })
  t.teardown(() => app.close())

  const unauth = await app.inject({ url: '/pop/v1/feed' })
  t.equal(unauth.statusCode, 403)
  t.equal(unauth.json().error.code, 'CLA_ERR_SYNC_UNKNOWN_POP')

  const p1 = await app.inject({ url: '/pop/v1/feed?limit=2', headers: { 'x-pop-id': 'pop-a' } })
  t.equal(p1.statusCode, 200)
  const b1 = p1.json()
  t.equal(b1.store_id, store.storeId)
  t.equal(b1.generation, store.generation)
  t.equal(b1.items.length, 2)
  t.match(
    verifyCheckpoint(store.trustedKeys, b1.checkpoint),
    { store_id: store.storeId, seq: b1.items[1].seq, chain: store.index.chainAt(b1.items[1].seq) },
    "each page carries the core's signed checkpoint of its last item",
  )
  t.equal(b1.more, true)
  const p2 = await app.inject({
    url: `/pop/v1/feed?limit=2&cursor=${b1.next}`,
    headers: { 'x-pop-id': 'pop-a' },
  })
  t.same(
    p2.json().items.map((i: { seq: number }) => i.seq),
    [3],
  )
  t.equal(p2.json().more, false)

  const bad = await app.inject({
    url: '/pop/v1/feed?cursor=nope',
    headers: { 'x-pop-id': 'pop-a' },
  })
  t.equal(bad.statusCode, 400)
  t.equal(bad.json().error.code, 'CLA_ERR_INVALID_CURSOR')
  const badLimit = await app.inject({
    url: '/pop/v1/feed?limit=100000',
    headers: { 'x-pop-id': 'pop-a' },
  })
  t.equal(badLimit.statusCode, 400)

  const rep = await app.inject({
    method: 'POST',
    url: '/pop/v1/report',
    headers: { 'x-pop-id': 'pop-a' },
    payload: { cursor: p2.json().next, ok: true, blobs: 3 },
  })
  t.equal(rep.statusCode, 200)
  t.equal(rep.json().state.lag_us, 0)
  const unknown = await app.inject({
    method: 'POST',
    url: '/pop/v1/report',
    headers: { 'x-pop-id': 'pop-z' },
    payload: { cursor: null, ok: true },
  })
  t.equal(unknown.statusCode, 403)
  const junk = await app.inject({
    method: 'POST',
    url: '/pop/v1/report',
    headers: { 'x-pop-id': 'pop-a' },
    payload: { ok: 'yes' },
  })
  t.equal(junk.statusCode, 400)
})
