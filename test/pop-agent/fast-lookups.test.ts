// The lookups' fast path (pop-agent/fast-lookups.ts): over real HTTP on loopback, its 200
// and 304 answers are the Fastify routes' (status, header names in order, values, body);
// everything else reaches Fastify with its coded error; it counts in the same per-address
// budget as the Fastify routes and in the request histogram; a newer blob replaces what it
// serves.
import { connect } from 'node:net'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildPopApp, type PopAppOptions } from '../../pop-agent/app.js'
import type { Pop } from '../../lib/pop.js'
import { openTestPop, randomP0, startCore, tempDir, type TestCore } from '../fixtures/sync.js'

interface Raw {
  status: number
  /** [name, value] in the order sent. */
  headers: Array<[string, string]>
  body: Buffer
}

/** One request on a fresh connection, the answer as sent (Connection: close; no chunking). */
function rawGet(port: number, path: string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1')
    const chunks: Buffer[] = []
    s.on('data', (c) => chunks.push(c))
    s.on('error', reject)
    s.on('end', () => {
      const all = Buffer.concat(chunks)
      const end = all.indexOf('\r\n\r\n')
      const lines = all.subarray(0, end).toString('latin1').split('\r\n')
      resolve({
        status: Number(lines[0]!.split(' ')[1]),
        headers: lines.slice(1).map((l) => {
          const i = l.indexOf(':')
          return [l.slice(0, i).toLowerCase(), l.slice(i + 1).trim()] as [string, string]
        }),
        body: all.subarray(end + 4),
      })
    })
    const extra = Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')
    s.write(`GET ${path} HTTP/1.1\r\nHost: pop\r\nConnection: close\r\n${extra}\r\n`)
  })
}

/** Headers that differ per answer by nature: the date and the random request id. */
function comparable(r: Raw): Array<[string, string]> {
  return r.headers.map(([k, v]) => {
    if (k === 'date') return [k, '(date)']
    if (k === 'x-request-id') {
      return [
        k,
        /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/.test(v)
          ? '(uuid)'
          : v,
      ]
    }
    return [k, v]
  })
}

interface Served {
  app: FastifyInstance
  port: number
  /** Requests Fastify's cycle saw (an onRequest hook at the root). */
  fastify: () => number
}

async function serve(t: Test, pop: Pop, opts: Partial<PopAppOptions> = {}): Promise<Served> {
  const app = await buildPopApp({ pop, prefetch: false, metrics: {}, ...opts })
  let seen = 0
  app.addHook('onRequest', (_req, _reply, done) => {
    seen++
    done()
  })
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => app.close())
  const a = app.server.address()
  return { app, port: typeof a === 'object' && a ? a.port : 0, fastify: () => seen }
}

async function popWith(
  t: Test,
  name: string,
  p0s: string[],
): Promise<{ core: TestCore; pop: Pop }> {
  const dir = tempDir(t)
  const core = await startCore(t, join(dir, 'core'))
  await core.addBlobs(p0s.length, p0s)
  const pop = await openTestPop(t, core, join(dir, 'pop'), name)
  await pop.sync.run()
  return { core, pop }
}

for (const rateLimit of [false, { max: 1000, timeWindowMs: 60_000 }] as const) {
  t.test(
    `200 and 304 are the Fastify routes' answers, byte for byte (rate limit ${rateLimit ? 'on' : 'off'})`,
    async (t) => {
      const p0 = randomP0()
      const { pop } = await popWith(t, 'pop-same', [p0])
      const fast = await serve(t, pop, { rateLimit })
      const slow = await serve(t, pop, { rateLimit, fastLookups: false })
      for (const path of [`/api/v1/wl3/${p0}`, `/api/v1/wl3/${p0}/cla`]) {
        const a = await rawGet(fast.port, path)
        const b = await rawGet(slow.port, path)
        t.equal(a.status, 200, path)
        t.same(comparable(a), comparable(b), `${path}: the same headers in the same order`)
        t.ok(a.body.equals(b.body), `${path}: the same body`)
        const names = a.headers.map(([k]) => k)
        for (const h of [
          'etag',
          'cache-control',
          'x-clavitor-seq',
          'clavitor-checkpoint',
          'content-type',
          'content-length',
          'x-request-id',
        ])
          t.ok(names.includes(h), `${path}: ${h}`)
        t.equal(
          names.includes('x-ratelimit-remaining'),
          rateLimit !== false,
          `${path}: rate-limit headers`,
        )
        const etag = a.headers.find(([k]) => k === 'etag')![1]
        for (const inm of [etag, `W/${etag}`, `"other", ${etag}`, '*']) {
          const c = await rawGet(fast.port, path, { 'if-none-match': inm })
          const d = await rawGet(slow.port, path, { 'if-none-match': inm })
          t.equal(c.status, 304, `${path} If-None-Match ${inm}`)
          t.same(comparable(c), comparable(d), `${path} 304: the same headers`)
          t.equal(c.body.length, 0)
        }
        const e = await rawGet(fast.port, path, { 'if-none-match': '"other"' })
        const f = await rawGet(slow.port, path, { 'if-none-match': '"other"' })
        t.equal(e.status, 200, 'another ETag: the body')
        t.same(comparable(e), comparable(f), `${path} another ETag: the same headers`)
        t.ok(e.body.equals(f.body))
      }
      t.equal(fast.fastify(), 0, 'Fastify saw none of the fast path’s requests')
      t.equal(slow.fastify(), 12, 'the other app answered all through Fastify')
    },
  )
}

t.test('errors and everything else reach Fastify, once, with their codes', async (t) => {
  const p0 = randomP0()
  const { pop } = await popWith(t, 'pop-err', [p0])
  const s = await serve(t, pop)
  const json = (r: Raw) => JSON.parse(r.body.toString()) as { error: { code: string } }
  const notFound = pop.lookup.notFound
  const unknown = await rawGet(s.port, `/api/v1/wl3/${randomP0()}`)
  t.equal(unknown.status, 404)
  t.equal(json(unknown).error.code, 'CLA_ERR_NOT_FOUND')
  t.ok(
    unknown.headers.some(([k]) => k === 'x-request-id'),
    'the error has its request id',
  )
  t.equal(
    pop.lookup.notFound,
    notFound + 1,
    'looked up once: the route threw the fast path’s error',
  )
  const reserved = await rawGet(s.port, `/api/v1/wl3/${'0'.repeat(64)}/cla`)
  t.equal(reserved.status, 400)
  t.equal(json(reserved).error.code, 'CLA_ERR_P0_RESERVED')
  const upper = await rawGet(s.port, `/api/v1/wl3/${p0.toUpperCase()}`)
  t.equal(upper.status, 400, 'a URL form the fast path leaves alone')
  t.equal(json(upper).error.code, 'CLA_ERR_INVALID_P0')
  t.equal((await rawGet(s.port, `/api/v1/wl3/${p0}?x=1`)).status, 200, 'with a query: Fastify')
  t.equal((await rawGet(s.port, `/api/v1/wl3/${p0}/versions`)).status, 200)
  t.equal((await rawGet(s.port, '/healthz')).status, 200)
  t.equal(s.fastify(), 6, 'each of them went through Fastify')
  const head = await s.app.inject({ method: 'HEAD', url: `/api/v1/wl3/${p0}` })
  t.equal(head.statusCode, 200, 'HEAD: Fastify as before')
})

t.test(
  'one budget per address across the fast path and the Fastify routes; over it, the coded 429',
  async (t) => {
    const p0 = randomP0()
    const { pop } = await popWith(t, 'pop-rl', [p0])
    const s = await serve(t, pop, {
      rateLimit: { max: 4, timeWindowMs: 60_000 },
      trustProxy: ['loopback'],
    })
    const from = (ip: string, path = `/api/v1/wl3/${p0}`) =>
      rawGet(s.port, path, { 'x-forwarded-for': ip })
    const remaining = (r: Raw) => r.headers.find(([k]) => k === 'x-ratelimit-remaining')?.[1]
    t.equal(remaining(await from('192.0.2.1')), '3', 'fast path')
    t.equal(remaining(await from('192.0.2.1', `/api/v1/wl3/${p0}/versions`)), '2', 'Fastify')
    t.equal(remaining(await from('192.0.2.1', `/api/v1/wl3/${p0}/cla`)), '1', 'fast path')
    t.equal(
      (await from('192.0.2.1', `/api/v1/wl3/${randomP0()}`)).status,
      404,
      'an error counts too',
    )
    t.equal(s.fastify(), 2)
    const over = await from('192.0.2.1')
    t.equal(over.status, 429, 'over budget on the fast path’s route')
    t.equal(JSON.parse(over.body.toString()).error.code, 'CLA_ERR_SYNC_RATE_LIMITED')
    t.ok(over.headers.some(([k]) => k === 'retry-after'))
    t.equal(
      (await from('192.0.2.1', `/api/v1/wl3/${p0}/versions`)).status,
      429,
      'and on the others',
    )
    t.equal((await from('192.0.2.2')).status, 200, 'another address has its own budget')
    t.equal(
      (await rawGet(s.port, `/api/v1/wl3/${p0}`, { 'x-forwarded-for': '2001:db8:1:2::1' })).status,
      200,
    )
    for (let i = 0; i < 3; i++) await from(`2001:db8:1:2::${i + 2}`)
    t.equal((await from('2001:db8:1:2:ffff::9')).status, 429, 'an IPv6 client by its /64')
    t.equal((await rawGet(s.port, `/api/v1/wl3/${p0}`)).status, 200, 'the proxy itself: its own')
  },
)

t.test('fast-path answers are in the request histogram', async (t) => {
  const p0 = randomP0()
  const { pop } = await popWith(t, 'pop-metrics', [p0])
  const s = await serve(t, pop)
  const ok = await rawGet(s.port, `/api/v1/wl3/${p0}`)
  const etag = ok.headers.find(([k]) => k === 'etag')![1]
  await rawGet(s.port, `/api/v1/wl3/${p0}`, { 'if-none-match': etag })
  await rawGet(s.port, `/api/v1/wl3/${p0}/cla`)
  t.equal(s.fastify(), 0)
  const body = (await rawGet(s.port, '/metrics')).body.toString()
  for (const [route, status] of [
    ['/api/v1/wl3/:p0', 200],
    ['/api/v1/wl3/:p0', 304],
    ['/api/v1/wl3/:p0/cla', 200],
  ] as const)
    t.match(
      body,
      new RegExp(
        `clavitor_http_request_duration_seconds_count\\{role="pop",method="GET",route="${route.replace(/\//g, '\\/')}",status="${status}"\\} 1\\b`,
      ),
      `${route} ${status}`,
    )
})

t.test('a newer blob published replaces the answer the fast path serves', async (t) => {
  const p0 = randomP0()
  const { core, pop } = await popWith(t, 'pop-newer', [p0])
  const s = await serve(t, pop)
  const seq = (r: Raw) => r.headers.find(([k]) => k === 'x-clavitor-seq')![1]
  const first = await rawGet(s.port, `/api/v1/wl3/${p0}`)
  const again = await rawGet(s.port, `/api/v1/wl3/${p0}`)
  t.equal(seq(again), seq(first))
  t.ok(pop.lookup.hits >= 1, 'the second was a cache hit')
  const [newer] = await core.addBlobs(1, [p0])
  await pop.sync.run()
  const after = await rawGet(s.port, `/api/v1/wl3/${p0}`)
  t.equal(seq(after), String(newer!.seq), 'the newer version')
  t.notOk(after.body.equals(first.body))
  t.equal(after.headers.find(([k]) => k === 'etag')![1], `"${newer!.sha256}"`)
  t.equal(s.fastify(), 0)
})

t.test('a fault outside the lookup does not escape the listener: Fastify answers it', async (t) => {
  const p0 = randomP0()
  const { pop } = await popWith(t, 'pop-fault', [p0])
  const s = await serve(t, pop, { rateLimit: { max: 10, timeWindowMs: 60_000 } })
  const remaining = (r: Raw) => r.headers.find(([k]) => k === 'x-ratelimit-remaining')?.[1]
  const checkpoint = pop.lookup.checkpoint.bind(pop.lookup)
  pop.lookup.checkpoint = () => {
    throw new Error('checkpoint unreadable')
  }
  const failed = await rawGet(s.port, `/api/v1/wl3/${p0}`)
  t.equal(failed.status, 500, 'Fastify’s route meets the same fault and answers it')
  t.same(JSON.parse(failed.body.toString()), {
    error: { code: 'CLA_ERR_INTERNAL', message: 'internal error' },
  })
  t.notOk(
    failed.headers.some(([k]) => k === 'etag' || k === 'x-clavitor-seq'),
    'nothing of the answer it replaced',
  )
  t.equal(remaining(failed), '9', 'counted once, by the plugin, not by the fast path too')
  t.equal(s.fastify(), 1)
  pop.lookup.checkpoint = checkpoint
  const ok = await rawGet(s.port, `/api/v1/wl3/${p0}`)
  t.equal(ok.status, 200, 'the process and the server live on')
  t.equal(remaining(ok), '8')
  t.equal(s.fastify(), 1, 'answered by the fast path again')
})
