// The POP API under attack: real HTTPS on 127.0.0.1 with openssl-made certificates.
// Each attack is its own test and expects (1) refusal, (2) an audit row with the right
// reason, and (3) no data served.
import t, { type Test } from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { request as httpsRequest, Agent, createServer as createHttpsServer } from 'node:https'
import { connect as tlsConnect } from 'node:tls'
import type { AddressInfo } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { openCore, type Core } from '../../lib/core.js'
import { addPop } from '../../lib/auth/pops.js'
import { revokeCert } from '../../lib/auth/ca.js'
import { signRequest, contentDigest } from '../../lib/auth/http-signature.js'
import { issueAccessToken, loadTokenSecrets, rotateTokenSecret } from '../../lib/auth/tokens.js'
import { listEvents, verifyChain, type EventRow } from '../../lib/audit/log.js'
import { buildPopApiApp, popApiTlsFromCa } from '../../server/pop-api.js'
import { PopApiClient } from '../../lib/auth/pop-client.js'
import { requestFeedClient } from '../../lib/pop-sync/transport.js'
import { makeExpiredPop, makePki, makeSelfSigned, type Pki, type PopPki } from '../fixtures/pki.js'

const SECRET = 'the-secret-data-only-pops-may-see'
const root = mkdtempSync(join(tmpdir(), 'cla-popsec-'))
t.teardown(() => rmSync(root, { recursive: true, force: true }))

let pki: Pki
let core: Core
let app: FastifyInstance
let limited: FastifyInstance
let port: number
let limitedPort: number
let A: PopPki, B: PopPki, C: PopPki, R: PopPki

t.before(async () => {
  pki = await makePki(root, ['pop-a', 'pop-b', 'pop-c', 'pop-r'])
  A = pki.pops['pop-a']!
  B = pki.pops['pop-b']!
  C = pki.pops['pop-c']!
  R = pki.pops['pop-r']!
  core = await openCore({ dataDir: pki.coreDir, protection: 'off' })
  addPop(core.db, { id: 'pop-a', certPem: A.certPem, allowlist: ['127.0.0.1'] })
  addPop(core.db, { id: 'pop-b', certPem: B.certPem, allowlist: ['127.0.0.1/32'] })
  addPop(core.db, { id: 'pop-c', certPem: C.certPem, allowlist: ['127.0.0.2'] })
  addPop(core.db, { id: 'pop-r', certPem: R.certPem, allowlist: ['127.0.0.1'] })
  const common = {
    core,
    tls: popApiTlsFromCa(pki.coreDir),
    bodyLimit: 64 * 1024,
    headersTimeoutMs: 1000,
    requestTimeoutMs: 2000,
    connectionsCheckingIntervalMs: 100,
    crlReloadMs: 100,
    // summaries written at once; no refusal limit here (it has its own tests below)
    refusals: { summaryIntervalMs: 50, maxRefusals: 100_000 },
    routes: (a: FastifyInstance) => {
      a.get('/pop/v1/secret', async (req) => ({ secret: SECRET, pop: req.popId }))
      a.post('/pop/v1/echo', async (req) => ({ secret: SECRET, got: req.body }))
    },
  }
  app = await buildPopApiApp({ ...common, rateLimitMax: 10_000 })
  await app.listen({ host: '127.0.0.1', port: 0 })
  port = (app.server.address() as AddressInfo).port
  limited = await buildPopApiApp({ ...common, rateLimitMax: 3, rateLimitWindowMs: 60_000 })
  await limited.listen({ host: '127.0.0.1', port: 0 })
  limitedPort = (limited.server.address() as AddressInfo).port
})

t.teardown(async () => {
  await app?.close()
  await limited?.close()
  await core?.close()
})

interface Res {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: string
}

interface SendOpts {
  pop?: PopPki | null // TLS identity (null: none)
  tlsKey?: string
  tlsCert?: string
  method?: string
  path?: string
  query?: string
  body?: string
  headers?: Record<string, string>
  localAddress?: string
  agent?: Agent
  port?: number
}

function send(o: SendOpts): Promise<Res> {
  const pop = o.pop === undefined ? A : o.pop
  const path = (o.path ?? '/pop/v1/secret') + (o.query ? `?${o.query}` : '')
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port: o.port ?? port,
        method: o.method ?? 'GET',
        path,
        headers: { ...o.headers, 'content-length': String(Buffer.byteLength(o.body ?? '')) },
        ca: pki.caCertPem,
        ...(pop || o.tlsCert
          ? { key: o.tlsKey ?? pop!.keyPem, cert: o.tlsCert ?? pop!.certPem }
          : {}),
        agent: o.agent ?? false,
        ...(o.localAddress ? { localAddress: o.localAddress } : {}),
      },
      (res) => {
        let body = ''
        res.setEncoding('utf8')
        res.on('data', (c: string) => (body += c))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(o.body ?? '')
  })
}

/** Headers signed by `signer` (default the TLS POP) for the request as given. */
function sign(
  o: { method?: string; path?: string; query?: string; body?: string; authority?: string },
  signer: PopPki = A,
  extra: { keyid?: string; created?: number; nonce?: string } = {},
): Record<string, string> {
  const h = signRequest(
    {
      method: o.method ?? 'GET',
      path: o.path ?? '/pop/v1/secret',
      query: o.query ?? '',
      authority: o.authority ?? `127.0.0.1:${port}`,
      headers: {},
    },
    {
      key: signer.key,
      keyid: extra.keyid ?? signer.id,
      created: extra.created,
      nonce: extra.nonce,
    },
    o.body ?? '',
  )
  return { ...h, 'content-digest': h['content-digest']! }
}

/** A fresh access token for `pop` (via the real token route). */
async function token(
  pop: PopPki = A,
  p = port,
): Promise<{ access_token: string; refresh_token: string }> {
  const body = '{}'
  const authority = `127.0.0.1:${p}`
  const r = await send({
    pop,
    port: p,
    method: 'POST',
    path: '/pop/v1/token',
    body,
    headers: {
      'content-type': 'application/json',
      ...sign({ method: 'POST', path: '/pop/v1/token', body, authority }, pop),
    },
  })
  if (r.status !== 200) throw new Error(`token: ${r.status} ${r.body}`)
  return JSON.parse(r.body) as { access_token: string; refresh_token: string }
}

async function authed(pop: PopPki, o: SendOpts & { signer?: PopPki } = {}): Promise<Res> {
  const tk = await token(pop, o.port ?? port)
  const req = {
    method: o.method,
    path: o.path,
    query: o.query,
    body: o.body,
    authority: `127.0.0.1:${o.port ?? port}`,
  }
  return send({
    ...o,
    pop,
    headers: {
      authorization: `Bearer ${tk.access_token}`,
      ...sign(req, o.signer ?? pop),
      ...o.headers,
    },
  })
}

let mark = 0
function since(): EventRow[] {
  return listEvents(core.db, { afterId: mark, order: 'asc', limit: 1000 })
}
t.beforeEach(() => {
  mark = listEvents(core.db, { limit: 1 })[0]?.id ?? 0
})

function refused(
  t: Test,
  r: Res | Error,
  status: number | 'tls',
  reason: string,
  actor?: string,
  ip = '127.0.0.1',
): void {
  if (status === 'tls')
    t.ok(r instanceof Error, `TLS refused (${r instanceof Error ? r.message : (r as Res).status})`)
  else t.equal((r as Res).status, status, `HTTP ${status}`)
  if (!(r instanceof Error)) t.notMatch(r.body, SECRET, 'no data served')
  const rows = since().filter((e) => e.outcome === 'refused')
  t.ok(
    rows.some(
      (e) =>
        e.kind === 'pop.request' &&
        e.reason === reason &&
        (actor === undefined || e.actor === actor) &&
        e.ip === ip,
    ),
    `audit row with reason ${reason}${actor ? ` for ${actor}` : ''} and the address (got ${rows.map((e) => `${e.actor}:${e.reason}@${e.ip}`).join(', ')})`,
  )
  t.notOk(
    rows.some((e) => e.reason === 'tls_aborted' || e.reason === 'bad_request'),
    'no echo of the dropped socket',
  )
}

/** Waits (bounded) until `pred` holds for the rows since the mark; returns them. */
async function rowsWhen(pred: (rows: EventRow[]) => boolean): Promise<EventRow[]> {
  for (let i = 0; i < 500; i++) {
    const rows = since()
    if (pred(rows)) return rows
    await new Promise((r) => setTimeout(r, 20))
  }
  return since()
}

const countOf = (e: EventRow): number =>
  (JSON.parse(e.data ?? '{}') as { count?: number }).count ?? 0

const settle = () => new Promise((r) => setTimeout(r, 50))

/** A PopApiClient of `id` (its PKI) against `apiPort`, closed at the test's end. */
function clientOf(
  t: { teardown: (fn: () => unknown) => void },
  id: 'pop-a' | 'pop-b',
  extra: Partial<ConstructorParameters<typeof PopApiClient>[0]> = {},
  apiPort = port,
): PopApiClient {
  const who = id === 'pop-a' ? A : B
  const client = new PopApiClient({
    baseUrl: `https://127.0.0.1:${apiPort}`,
    popId: id,
    keyPem: who.keyPem,
    certPem: who.certPem,
    caPem: pki.caCertPem,
    ...extra,
  })
  t.teardown(() => client.close())
  return client
}

t.test('a good request is served and audited as allowed', async (t) => {
  const r = await authed(A)
  t.equal(r.status, 200, r.body)
  t.match(JSON.parse(r.body), { secret: SECRET, pop: 'pop-a' })
  t.ok(
    since().some(
      (e) =>
        e.actor === 'pop-a' &&
        e.outcome === 'allowed' &&
        e.route === 'GET /pop/v1/secret' &&
        e.fingerprint === A.fingerprint &&
        e.ip === '127.0.0.1',
    ),
  )
})

t.test('the sync routes are mounted behind the same checks', async (t) => {
  const r = await authed(A, { path: '/pop/v1/feed' })
  t.equal(r.status, 200, r.body)
  const anon = await send({ pop: A, path: '/pop/v1/feed', headers: sign({ path: '/pop/v1/feed' }) })
  refused(t, anon, 401, 'token_missing', 'pop-a')
})

t.test('attack: no client certificate', async (t) => {
  const r = await send({ pop: null }).catch((e: Error) => e)
  await settle()
  refused(t, r, 'tls', 'cert_missing')
})

t.test('attack: a certificate from another CA', async (t) => {
  const r = await send({ pop: pki.foreign }).catch((e: Error) => e)
  await settle()
  refused(t, r, 'tls', 'cert_untrusted')
})

t.test('attack: an expired certificate of our CA', async (t) => {
  const expired = await makeExpiredPop(pki.coreDir, root, 'pop-a')
  const r = await send({ tlsKey: expired.keyPem, tlsCert: expired.certPem }).catch((e: Error) => e)
  await settle()
  refused(t, r, 'tls', 'cert_expired')
  t.ok(
    since().some((e) => e.reason === 'cert_expired' && e.fingerprint === expired.fingerprint),
    'the certificate presented is recorded',
  )
})

t.test('attack: a self-signed certificate naming a POP', async (t) => {
  const self = await makeSelfSigned(root, 'pop-a')
  const r = await send({ tlsKey: self.keyPem, tlsCert: self.certPem }).catch((e: Error) => e)
  await settle()
  refused(t, r, 'tls', 'cert_untrusted')
})

t.test('attack: a certificate of POP A with the key of POP B', async (t) => {
  // TLS proves possession: A's certificate cannot be used with B's key at all
  const r0 = await send({ pop: A, tlsKey: B.keyPem }).catch((e: Error) => e)
  t.ok(r0 instanceof Error, 'no TLS session with a mismatched key')
  // over A's own connection, a request signed by B's key, claiming to be A
  const tk = await token(A)
  const r1 = await send({
    pop: A,
    headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}, B, { keyid: 'pop-a' }) },
  })
  refused(t, r1, 401, 'sig_invalid', 'pop-a')
  // … or naming B as keyid
  const r2 = await send({
    pop: A,
    headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}, B) },
  })
  refused(t, r2, 401, 'sig_keyid_mismatch', 'pop-a')
})

t.test('attack: a bad signature', async (t) => {
  const tk = await token(A)
  const h = sign({})
  h.signature = 'sig1=:' + Buffer.alloc(64, 7).toString('base64') + ':'
  refused(
    t,
    await send({ headers: { authorization: `Bearer ${tk.access_token}`, ...h } }),
    401,
    'sig_invalid',
    'pop-a',
  )
  const m = sign({})
  m['signature-input'] = 'sig1=("@method";'
  refused(
    t,
    await send({ headers: { authorization: `Bearer ${tk.access_token}`, ...m } }),
    401,
    'sig_malformed',
    'pop-a',
  )
  refused(
    t,
    await send({ headers: { authorization: `Bearer ${tk.access_token}` } }),
    401,
    'sig_missing',
    'pop-a',
  )
  const u = sign({}, A, { keyid: 'pop-nobody' })
  refused(
    t,
    await send({ headers: { authorization: `Bearer ${tk.access_token}`, ...u } }),
    401,
    'sig_keyid_unknown',
    'pop-a',
  )
})

t.test('attack: the body changed after signing', async (t) => {
  const tk = await token(A)
  const h = sign({ method: 'POST', path: '/pop/v1/echo', body: '{"n":1}' })
  const r = await send({
    method: 'POST',
    path: '/pop/v1/echo',
    body: '{"n":2}',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${tk.access_token}`,
      ...h,
    },
  })
  refused(t, r, 401, 'digest_mismatch', 'pop-a')
  // and with the digest recomputed, the signature no longer matches
  const h2 = sign({ method: 'POST', path: '/pop/v1/echo', body: '{"n":1}' })
  h2['content-digest'] = contentDigest('{"n":2}')
  const r2 = await send({
    method: 'POST',
    path: '/pop/v1/echo',
    body: '{"n":2}',
    headers: {
      'content-type': 'application/json',
      authorization: `Bearer ${tk.access_token}`,
      ...h2,
    },
  })
  refused(t, r2, 401, 'sig_invalid', 'pop-a')
})

t.test('attack: the query changed after signing', async (t) => {
  const tk = await token(A)
  const h = sign({ query: 'cursor=10' })
  const r = await send({
    query: 'cursor=0',
    headers: { authorization: `Bearer ${tk.access_token}`, ...h },
  })
  refused(t, r, 401, 'sig_invalid', 'pop-a')
})

t.test('attack: a replayed request', async (t) => {
  const tk = await token(A)
  const headers = { authorization: `Bearer ${tk.access_token}`, ...sign({}) }
  t.equal((await send({ headers })).status, 200)
  refused(t, await send({ headers }), 401, 'nonce_replayed', 'pop-a')
})

t.test('attack: a timestamp too old and too new', async (t) => {
  const tk = await token(A)
  const nowSec = Math.floor(Date.now() / 1000)
  refused(
    t,
    await send({
      headers: {
        authorization: `Bearer ${tk.access_token}`,
        ...sign({}, A, { created: nowSec - 3600 }),
      },
    }),
    401,
    'ts_too_old',
    'pop-a',
  )
  refused(
    t,
    await send({
      headers: {
        authorization: `Bearer ${tk.access_token}`,
        ...sign({}, A, { created: nowSec + 3600 }),
      },
    }),
    401,
    'ts_in_future',
    'pop-a',
  )
})

t.test('attack: a disallowed IP', async (t) => {
  // 127.0.0.3 is in no POP's allowlist: dropped before TLS, counted in a summary row
  const r = await send({ localAddress: '127.0.0.3' }).catch((e: Error) => e)
  t.ok(r instanceof Error, 'dropped before TLS')
  const rows = await rowsWhen((rs) => rs.some((e) => e.kind === 'pop.refusals'))
  t.same(
    rows.map((e) => [e.kind, e.reason, e.ip, countOf(e)]),
    [['pop.refusals', 'ip_not_allowed', '127.0.0.3', 1]],
    'one summary row with the address, and nothing for the dropped socket',
  )
  // 127.0.0.2 is allowed for pop-c only: pop-a from there is refused
  const r2 = await send({ localAddress: '127.0.0.2', headers: sign({}) })
  refused(t, r2, 403, 'ip_not_allowed', 'pop-a', '127.0.0.2')
  // and pop-c from its own address gets in
  const tk = await token(C).catch((e: Error) => e)
  t.ok(tk instanceof Error, 'pop-c cannot get a token from 127.0.0.1')
})

t.test('attack: a burst over the rate limit', async (t) => {
  const tk = await token(B, limitedPort) // 1 of 3
  const statuses: number[] = []
  let last: Res | undefined
  for (let i = 0; i < 5; i++) {
    last = await send({
      pop: B,
      port: limitedPort,
      headers: {
        authorization: `Bearer ${tk.access_token}`,
        ...sign({ authority: `127.0.0.1:${limitedPort}` }, B),
      },
    })
    statuses.push(last.status)
  }
  t.same(statuses, [200, 200, 429, 429, 429])
  t.match(String(last!.headers['retry-after']), /^\d+$/, 'Retry-After')
  refused(t, last!, 429, 'rate_limited', 'pop-b')
  // the limit is per POP: another POP is not affected
  const other = await token(A, limitedPort).then(
    () => 'ok',
    (e: Error) => e.message,
  )
  t.equal(other, 'ok')
})

t.test('attack: an expired token', async (t) => {
  const [secret] = loadTokenSecrets(pki.coreDir)
  const old = issueAccessToken(
    secret!,
    'pop-a',
    A.fingerprint,
    Math.floor(Date.now() / 1000) - 3600,
  )
  refused(
    t,
    await send({ headers: { authorization: `Bearer ${old.token}`, ...sign({}) } }),
    401,
    'token_expired',
    'pop-a',
  )
  refused(
    t,
    await send({ headers: { authorization: 'Bearer cpt1.bogus.bogus', ...sign({}) } }),
    401,
    'token_invalid',
    'pop-a',
  )
})

t.test('attack: a token from another certificate', async (t) => {
  const tkB = await token(B)
  refused(
    t,
    await send({ pop: A, headers: { authorization: `Bearer ${tkB.access_token}`, ...sign({}) } }),
    401,
    'token_wrong_cert',
    'pop-a',
  )
})

t.test('attack: a reused refresh token revokes the chain', async (t) => {
  const t0 = await token(A)
  const refresh = async (rt: string) => {
    const body = JSON.stringify({ refresh_token: rt })
    return send({
      method: 'POST',
      path: '/pop/v1/token/refresh',
      body,
      headers: {
        'content-type': 'application/json',
        ...sign({ method: 'POST', path: '/pop/v1/token/refresh', body }),
      },
    })
  }
  const r1 = await refresh(t0.refresh_token)
  t.equal(r1.status, 200, r1.body)
  const t1 = JSON.parse(r1.body) as { refresh_token: string; access_token: string }
  t.not(t1.refresh_token, t0.refresh_token, 'rotated')
  const reuse = await refresh(t0.refresh_token)
  t.equal(reuse.status, 401)
  t.ok(
    since().some(
      (e) =>
        e.kind === 'pop.token' &&
        e.outcome === 'refused' &&
        e.reason === 'refresh_reused' &&
        e.actor === 'pop-a',
    ),
    'audited as refresh_reused',
  )
  t.notMatch(reuse.body, /access_token/)
  const after = await refresh(t1.refresh_token)
  t.equal(after.status, 401, 'the live token of the chain is revoked too')
  t.match(JSON.parse(after.body), {
    error: { code: 'CLA_ERR_AUTH_TOKEN', details: { reason: 'refresh_reused' } },
  })
})

t.test('attack: path traversal', async (t) => {
  for (const path of [
    '/pop/v1/../../etc/passwd',
    '/pop/v1/%2e%2e/%2e%2e/admin',
    '/admin/../pop/v1/secret',
    '/pop/v1//secret',
  ]) {
    const r = await send({ path, headers: sign({ path }) })
    refused(t, r, 400, 'bad_path')
  }
})

t.test('attack: an oversized body', async (t) => {
  const body = 'x'.repeat(200 * 1024)
  const r = await send({
    method: 'POST',
    path: '/pop/v1/echo',
    body,
    headers: {
      'content-type': 'application/json',
      ...sign({ method: 'POST', path: '/pop/v1/echo', body }),
    },
  }).catch((e: Error) => e)
  if (r instanceof Error) {
    t.match(r.message, /EPIPE|ECONNRESET|socket/, 'the server cut the upload')
    await settle()
    t.ok(since().some((e) => e.reason === 'body_too_large'))
  } else {
    refused(t, r, 413, 'body_too_large')
  }
})

function slowClient(
  send: (s: import('node:tls').TLSSocket) => void,
): Promise<{ closedBy: 'server'; data: string }> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect(
      {
        host: '127.0.0.1',
        port,
        ca: pki.caCertPem,
        key: A.keyPem,
        cert: A.certPem,
        servername: 'localhost',
      },
      () => send(s),
    )
    let data = ''
    s.setEncoding('utf8')
    s.on('data', (c: string) => (data += c))
    s.on('error', () => {})
    s.on('close', () => resolve({ closedBy: 'server', data }))
    setTimeout(() => {
      s.destroy()
      reject(new Error('the server never closed the slow connection'))
    }, 20_000).unref()
  })
}

t.test('attack: a slow client that never finishes its headers', async (t) => {
  const r = await slowClient((s) =>
    s.write('GET /pop/v1/secret HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: '),
  )
  t.notMatch(r.data, SECRET, 'no data served')
  t.match(r.data, /^(HTTP\/1\.1 408|)/, 'answered 408 or just closed')
  t.ok(
    since().some((e) => e.reason === 'request_timeout' && e.outcome === 'refused'),
    'audited as request_timeout',
  )
})

t.test('attack: a slow client that never finishes its body', async (t) => {
  const r = await slowClient((s) => {
    const h = sign({ method: 'POST', path: '/pop/v1/echo', body: '{"a":1}' })
    s.write(
      'POST /pop/v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n' +
        Object.entries(h)
          .map(([k, v]) => `${k}: ${v}\r\n`)
          .join('') +
        '\r\n{"a":',
    )
  })
  t.notMatch(r.data, SECRET, 'no data served')
  t.ok(
    since().some(
      (e) => e.outcome === 'refused' && /request_timeout|status_408|FST_ERR/.test(e.reason ?? ''),
    ),
    `audited (${since()
      .map((e) => e.reason)
      .join(',')})`,
  )
})

t.test('attack: a revoked certificate, also on an open keep-alive connection', async (t) => {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  t.teardown(() => agent.destroy())
  const tk = await token(R)
  let socketCount = 0
  agent.on('free', () => {})
  const before = await send({
    pop: R,
    agent,
    headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}, R) },
  })
  t.equal(before.status, 200)
  socketCount =
    Object.values(agent.sockets).flat().length + Object.values(agent.freeSockets).flat().length
  t.equal(socketCount, 1, 'one kept-alive connection')
  await revokeCert(pki.coreDir, { popId: 'pop-r' })
  const after = await send({
    pop: R,
    agent,
    headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}, R) },
  })
  refused(t, after, 401, 'cert_revoked', 'pop-r')
  // a new connection is refused at the handshake once the TLS context reloaded the CRL
  await new Promise((r) => setTimeout(r, 400))
  const fresh = await send({
    pop: R,
    headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}, R) },
  }).catch((e: Error) => e)
  await settle()
  refused(t, fresh, 'tls', 'cert_revoked')
})

t.test('the POP client: token, refresh before expiry, 429 back-off', async (t) => {
  const client = clientOf(t, 'pop-b')
  const r = await client.request<{ secret: string }>('GET', '/pop/v1/secret')
  t.equal(r.status, 200)
  t.equal(r.json.secret, SECRET)
  const e = await client.request<{ got: unknown }>('POST', '/pop/v1/echo', {
    body: { hello: 'world' },
    query: { a: '1', b: 'x y' },
  })
  t.same(e.json.got, { hello: 'world' })
  t.equal((await client.request('GET', '/pop/v1/feed', { query: { limit: 10 } })).status, 200)
  // a token that is within the refresh margin is refreshed (rotating refresh token) first
  const c2 = clientOf(t, 'pop-b', { refreshMarginSec: 299 })
  t.equal((await c2.request('GET', '/pop/v1/secret')).status, 200)
  await new Promise((r) => setTimeout(r, 1100))
  mark = listEvents(core.db, { limit: 1 })[0]?.id ?? 0
  t.equal((await c2.request('GET', '/pop/v1/secret')).status, 200)
  t.ok(
    since().some(
      (x) => x.kind === 'pop.token' && x.reason === 'token_refreshed' && x.actor === 'pop-b',
    ),
    'refreshed before expiry',
  )
  t.ok(verifyChain(core.db).ok, 'the audit chain is intact after all of this')
})

t.test('the POP client backs off on 429 honouring Retry-After', async (t) => {
  const fast = await buildPopApiApp({
    core,
    tls: popApiTlsFromCa(pki.coreDir),
    rateLimitMax: 2,
    rateLimitWindowMs: 1000,
    routes: (a) => void a.get('/pop/v1/secret', async () => ({ ok: true })),
  })
  await fast.listen({ host: '127.0.0.1', port: 0 })
  t.teardown(() => fast.close())
  const p = (fast.server.address() as AddressInfo).port
  const client = clientOf(t, 'pop-a', { maxRetries: 5 }, p)
  const statuses: number[] = []
  for (let i = 0; i < 4; i++) statuses.push((await client.request('GET', '/pop/v1/secret')).status)
  t.same(statuses, [200, 200, 200, 200], 'every request eventually succeeds')
  t.ok(
    since().some((e) => e.reason === 'rate_limited' && e.actor === 'pop-a'),
    'the 429s happened and were audited',
  )
})

t.test(
  'the sync FeedClient runs over PopApiClient (feed page and report through mTLS)',
  async (t) => {
    const client = clientOf(t, 'pop-b')
    await core.store.put('ab'.repeat(16), Buffer.from('wl3'))
    const feed = requestFeedClient(client)
    const page = await feed.page(null, 10)
    t.ok(page.items.length >= 1, 'the feed lists the blob')
    await feed.report({ cursor: null, ok: true, blobs: 0 })
    const row = core.db.prepare('SELECT pop_id FROM pop_sync_state WHERE pop_id = ?').get('pop-b')
    t.ok(row, 'the report was recorded for the authenticated POP')
  },
)

t.test(
  'the feed long-poll over PopApiClient: woken by a commit, outlives the request timeout, audited once per wait',
  async (t) => {
    const client = clientOf(t, 'pop-b')
    const feed = requestFeedClient(client)
    const head = (await feed.page(null, 5000)).next
    mark = listEvents(core.db, { limit: 1 })[0]?.id ?? 0
    // nothing new: the wait ends empty after its 3 s, beyond this app's 2 s request timeout
    const idle = await feed.wait!(head, 3)
    t.same(idle.items, [], 'an empty page at the timeout')
    const waiting = feed.wait!(head, 30)
    await new Promise((r) => setTimeout(r, 200)) // let the wait reach the core
    const info = await core.store.put('cd'.repeat(16), Buffer.from('new wl3'))
    const woke = await waiting
    t.same(
      woke.items.map((i) => i.seq),
      [info.seq],
      'woken with the new blob',
    )
    const feedRows = since().filter(
      (e) => e.kind === 'pop.request' && e.actor === 'pop-b' && e.route === 'GET /pop/v1/feed',
    )
    t.equal(feedRows.length, 2, 'one audit row per long-poll (two waits)')
    t.ok(
      feedRows.every((e) => e.outcome === 'allowed'),
      'each authenticated (mTLS, signature, token) and allowed',
    )
  },
)

t.test(
  'token secret rotation: old tokens live on once, then the client logs in again by itself',
  async (t) => {
    const client = clientOf(t, 'pop-a')
    t.equal((await client.request('GET', '/pop/v1/secret')).status, 200)
    rotateTokenSecret(pki.coreDir)
    t.equal(
      (await client.request('GET', '/pop/v1/secret')).status,
      200,
      'the previous secret still verifies',
    )
    rotateTokenSecret(pki.coreDir)
    mark = listEvents(core.db, { limit: 1 })[0]?.id ?? 0
    t.equal(
      (await client.request('GET', '/pop/v1/secret')).status,
      200,
      'recovered with a fresh token',
    )
    const rows = since()
    t.ok(
      rows.some((e) => e.reason === 'token_invalid' && e.actor === 'pop-a'),
      'the stale token was refused',
    )
    t.ok(
      rows.some((e) => e.kind === 'pop.token' && e.reason === 'token_issued'),
      'a new token was issued',
    )
  },
)

t.test(
  'fail closed: when the audit log cannot be written, a good request is refused',
  async (t) => {
    const tk = await token(A)
    core.db.exec(
      "CREATE TRIGGER pop_sec_no_audit BEFORE INSERT ON events BEGIN SELECT RAISE(ABORT, 'disk full'); END",
    )
    t.teardown(() => core.db.exec('DROP TRIGGER IF EXISTS pop_sec_no_audit'))
    const r = await send({ headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}) } })
    t.equal(r.status, 503)
    t.match(JSON.parse(r.body), { error: { code: 'CLA_ERR_AUDIT_WRITE_FAILED' } })
    t.notMatch(r.body, SECRET, 'no data served')
    core.db.exec('DROP TRIGGER pop_sec_no_audit')
    const ok = await send({ headers: { authorization: `Bearer ${tk.access_token}`, ...sign({}) } })
    t.equal(ok.status, 200, 'served again once the log is writable')
  },
)

// Regression (issue 11, item 2): a client without any credential bought three fsynced
// audit rows per TCP connection (~2,000 rows/s from one loopback client).
t.test(
  'attack: a flood of anonymous connections costs one row per source and reason',
  async (t) => {
    const flood = await buildPopApiApp({
      core,
      tls: popApiTlsFromCa(pki.coreDir),
      refusals: { summaryIntervalMs: 3_600_000 }, // written at close, for this test
    })
    await flood.listen({ host: '127.0.0.1', port: 0 })
    const p = (flood.server.address() as AddressInfo).port
    const { connect } = await import('node:net')
    const open = (localAddress: string) =>
      new Promise<void>((resolve) => {
        const s = connect({ port: p, host: '127.0.0.1', localAddress }, () => s.end())
        s.on('error', () => {})
        s.on('close', () => resolve())
      })
    for (let i = 0; i < 100; i++) await open('127.0.0.3') // in no allowlist
    for (let i = 0; i < 40; i++) await open('127.0.0.1') // allowed, closes before TLS
    await settle()
    t.same(
      since().filter((e) => e.kind.startsWith('pop.')),
      [],
      'no audit row per connection',
    )
    await flood.close()
    const rows = since()
    t.same(
      rows.map((e) => [e.kind, e.reason, e.ip, countOf(e)]).sort(),
      [
        ['pop.refusals', 'ip_not_allowed', '127.0.0.3', 100],
        ['pop.refusals', 'tls_aborted', '127.0.0.1', 40],
      ],
      'one summary row per source and reason, with the count',
    )
    const metrics = (await core.metrics.render()).body
    t.match(
      metrics,
      /clavitor_pop_api_refusals_counted_total\{stage="connect",reason="ip_not_allowed"[^}]*\} \d+/,
      'counted on /metrics',
    )
  },
)

t.test(
  'attack: a certificate holder sending unsigned requests is limited, then counted',
  async (t) => {
    const guarded = await buildPopApiApp({
      core,
      tls: popApiTlsFromCa(pki.coreDir),
      refusals: { summaryIntervalMs: 3_600_000, maxRefusals: 5, windowMs: 600_000 },
    })
    await guarded.listen({ host: '127.0.0.1', port: 0 })
    const p = (guarded.server.address() as AddressInfo).port
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    t.teardown(() => agent.destroy())
    const statuses: number[] = []
    let last: Res | undefined
    for (let i = 0; i < 30; i++) {
      last = await send({ port: p, agent }) // A's certificate, no signature
      statuses.push(last.status)
    }
    t.same(statuses, [...Array(5).fill(401), ...Array(25).fill(429)], '5 refusals, then 429')
    t.match(String(last!.headers['retry-after']), /^\d+$/, 'Retry-After')
    t.match(JSON.parse(last!.body), { error: { code: 'CLA_ERR_AUTH_RATE_LIMITED' } })
    t.notMatch(last!.body, SECRET, 'no data served')
    const fresh = await send({ port: p }).catch((e: Error) => e)
    t.ok(fresh instanceof Error, 'a new connection from that address is dropped at connect')
    const audited = since().filter((e) => e.kind === 'pop.request')
    t.equal(audited.length, 5, 'each refusal that reached authentication has its row')
    t.ok(audited.every((e) => e.reason === 'sig_missing' && e.ip === '127.0.0.1'))
    await guarded.close()
    const summaries = since()
      .filter((e) => e.kind === 'pop.refusals')
      .map((e) => [e.reason, JSON.parse(e.data ?? '{}').stage, e.ip, countOf(e)])
    t.same(
      summaries.sort(),
      [
        ['refusals_limited', 'connect', '127.0.0.1', 1],
        ['refusals_limited', 'http', '127.0.0.1', 25],
      ],
      'the limited ones are counted in summary rows',
    )
  },
)

t.test('every refused pop.request row is counted in clavitor_auth_refusals_total', async (t) => {
  const refusedRows = listEvents(core.db, { kind: 'pop.request', outcome: 'refused', limit: 1000 })
  t.ok(refusedRows.length > 10, `the attacks above left refusals (${refusedRows.length})`)
  const want = new Map<string, number>()
  for (const e of refusedRows)
    want.set(e.reason ?? 'unknown', (want.get(e.reason ?? 'unknown') ?? 0) + 1)
  const body = (await core.metrics.render()).body
  for (const [reason, n] of want)
    t.match(
      body,
      new RegExp(`clavitor_auth_refusals_total\\{reason="${reason}",role="core"\\} ${n}\\n`),
      `${reason}: ${n}, counted where each row was written`,
    )
})

t.test(
  'the POP client retries a read once on a kept-alive socket the core closed as it was reused, never a token refresh',
  async (t) => {
    // a server that answers the first request of a connection and drops the connection at
    // the second: what the core's 5 s keep-alive timeout does to a socket reused just then
    const tls = popApiTlsFromCa(pki.coreDir)
    const perSocket = new WeakMap<object, number>()
    let requests = 0
    const server = createHttpsServer({ key: tls.key, cert: tls.cert }, (req, res) => {
      requests++
      const n = (perSocket.get(req.socket) ?? 0) + 1
      perSocket.set(req.socket, n)
      if (n > 1) return req.socket.destroy()
      res.setHeader('content-type', 'application/json')
      res.end(JSON.stringify({ ok: true }))
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    t.teardown(() => new Promise<void>((r) => server.close(() => r())))
    const client = clientOf(t, 'pop-a', {}, (server.address() as AddressInfo).port)
    const a = await client.request('GET', '/pop/v1/anything', { token: false })
    const b = await client.request('GET', '/pop/v1/anything', { token: false })
    t.equal(a.status, 200)
    t.equal(b.status, 200, 'the second request made it, on a new connection')
    t.equal(requests, 3, 'the dropped one, then its retry')
    // a POST other than the report is not sent twice (a refresh token must never be)
    await t.rejects(
      client.request('POST', '/pop/v1/token/refresh', {
        token: false,
        body: { refresh_token: 'x' },
      }),
      /socket hang up|ECONNRESET/,
    )
    t.equal(requests, 4, 'dropped, and not sent again')
  },
)
