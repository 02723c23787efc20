// Regression (issue 11, item 13): the time limits fire when they say. Node checks request
// and header timeouts only every `connectionsCheckingInterval` (30 s by default, so a
// 30 s timeout fired between 30 and 60 s), and a TLS socket that never sends a
// ClientHello lived 120 s on the POP API (tls.Server's default handshakeTimeout).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { connect, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import type { FastifyInstance } from 'fastify'
import { openCore } from '../../lib/core.js'
import { addPop } from '../../lib/auth/pops.js'
import { listEvents } from '../../lib/audit/log.js'
import { buildCoreApp } from '../../server/app.js'
import { buildPopApiApp, popApiTlsFromCa } from '../../server/pop-api.js'
import { buildPopApp } from '../../pop-agent/app.js'
import { CONNECTIONS_CHECKING_INTERVAL_MS } from '../../http/timeouts.js'
import { makePki } from '../fixtures/pki.js'

process.env.CLAVITOR_PROTECTION = 'off'
const root = mkdtempSync(join(tmpdir(), 'clavitor-timeouts-'))
t.teardown(() => {
  spawnSync('chattr', ['-R', '-i', '-a', root])
  rmSync(root, { recursive: true, force: true })
})

/** The interval Node's http.Server checks its timeouts at (set at listen; no public getter). */
function checkingInterval(app: FastifyInstance): number | undefined {
  const server = app.server as unknown as Record<symbol, { _idleTimeout?: number } | undefined>
  const key = Object.getOwnPropertySymbols(server).find((s) =>
    String(s).includes('connectionsCheckingInterval'),
  )
  return key ? server[key]?._idleTimeout : undefined
}

/** Sends `bytes` and never finishes the request; resolves with what the server answered. */
function stall(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = ''
    const s = connect(port, '127.0.0.1', () => s.write(bytes))
    s.setEncoding('utf8')
    s.on('data', (c: string) => (got += c))
    s.on('close', () => resolve(got))
    s.on('error', reject)
  })
}

/** Checked every second, and a request that never ends gets its 408. */
async function expectTimelyTimeouts(t: Test, app: FastifyInstance): Promise<void> {
  await app.listen({ host: '127.0.0.1', port: 0 })
  t.equal(checkingInterval(app), CONNECTIONS_CHECKING_INTERVAL_MS, 'checked every second')
  const port = (app.server.address() as AddressInfo).port
  const answer = await stall(port, 'GET /healthz HTTP/1.1\r\n')
  t.match(answer, /^HTTP\/1\.1 408/, 'the request timeout fired')
}

t.test('core app: a stalled request gets its 408; timeouts checked every second', async (t) => {
  const core = await openCore({ dataDir: join(root, 'core') })
  const app = await buildCoreApp({
    core,
    admin: { secret: 'x'.repeat(43), onSetupUrl: () => {} },
    fastify: { requestTimeout: 300 },
  })
  t.teardown(async () => {
    await app.close()
    await core.close()
  })
  await expectTimelyTimeouts(t, app)
})

t.test('POP lookup app: timeouts checked every second', async (t) => {
  const app = await buildPopApp({ fastify: { requestTimeout: 300 } })
  t.teardown(() => app.close())
  await expectTimelyTimeouts(t, app)
})

t.test(
  'POP API: a socket that never sends a ClientHello is closed at the handshake timeout, counted, not audited',
  // the old default (120 s) would outlive this test's own timeout
  { timeout: 60_000 },
  async (t) => {
    const pki = await makePki(join(root, 'pki'), ['pop-a'])
    const core = await openCore({ dataDir: pki.coreDir })
    addPop(core.db, { id: 'pop-a', certPem: pki.pops['pop-a']!.certPem, allowlist: ['127.0.0.1'] })
    const app = await buildPopApiApp({
      core,
      tls: popApiTlsFromCa(pki.coreDir),
      handshakeTimeoutMs: 500,
    })
    t.teardown(async () => {
      await app.close().catch(() => {})
      await core.close()
    })
    await app.listen({ host: '127.0.0.1', port: 0 })
    const mark = listEvents(core.db, { limit: 1 })[0]?.id ?? 0
    const answer = await stall((app.server.address() as AddressInfo).port, '')
    t.equal(answer, '', 'closed without a word')
    const counted = await core.metrics.render()
    t.match(
      counted.body,
      /clavitor_pop_api_refusals_counted_total\{stage="tls",reason="handshake_timeout"[^}]*\} 1/,
      'counted',
    )
    t.same(
      listEvents(core.db, { afterId: mark, order: 'asc' }).map((e) => e.kind),
      [],
      'no audit row for it',
    )
    await app.close()
    const summary = listEvents(core.db, { afterId: mark, order: 'asc' })
    t.same(
      summary.map((e) => [
        e.kind,
        e.reason,
        e.ip,
        (JSON.parse(e.data ?? '{}') as { count: number }).count,
      ]),
      [['pop.refusals', 'handshake_timeout', '127.0.0.1', 1]],
      'one summary row at the end of the interval (here: the close)',
    )
  },
)
