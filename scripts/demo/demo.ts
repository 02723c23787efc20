// `clavitor demo` (what `npm start` runs): the whole system on this machine, in one
// process plus an rsync daemon, with a fresh CA and data under one folder:
//
//   {data}/core/      the core (meta.db, store/, keys/, ca/)
//   {data}/pop-a/     POP a (its key, certificate, replica store)
//   {data}/pop-b/     POP b
//   {data}/rsyncd/    the rsync daemon's config, lock, pid and log (outside the store)
//   {data}/demo.log   every component's JSON log (pino)
//
// Every step goes through the same code paths as production: the fake Paddle over HTTP,
// the POP enrolment (key + CSR on the POP, certificate from the CA, registry on the core),
// the credentials API over HTTP with a vault key, the sync feed over mTLS, rsync from a
// daemon with per-POP users, WL3 lookups over HTTP, the .cla signature verified offline.
// An operator script, not library code: it composes lib/, server/ and pop-agent/.
import { spawn, type ChildProcess } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import {
  copyFileSync,
  createWriteStream,
  mkdirSync,
  writeFileSync,
  type WriteStream,
} from 'node:fs'
import { connect, createServer, type AddressInfo } from 'node:net'
import { join, resolve } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { openCore, dataPaths, type Core } from '../../lib/core.js'
import { blobIndex } from '../../lib/store/blob-index.js'
import { createLogger, type Logger } from '../../lib/log.js'
import { caPaths, initCa, issuePopCert, popAuthPaths, popInit } from '../../lib/auth/ca.js'
import { enrolPop } from '../../lib/core-sync/pop-registry.js'
import { popRsyncPasswordFile, rsyncdSecretsFile } from '../../lib/core-sync/rsync-auth.js'
import { PopApiClient } from '../../lib/auth/pop-client.js'
import { scanAnchors, startAnchorTimer, writeAnchor } from '../../lib/audit/anchor.js'
import { verifyChain } from '../../lib/audit/log.js'
import { openPop, type Pop } from '../../lib/pop.js'
import type { VaultStatus } from '../../lib/credentials/vault-status.js'
import { makeKeyRing } from '../../lib/store/keys.js'
import type { RunOutcome } from '../../lib/pop-sync/agent.js'
import { listPopSyncStates } from '../../lib/core-sync/pop-state.js'
import { renderRsyncdConfig } from '../../lib/core-sync/rsyncd-config.js'
import { requestFeedClient } from '../../lib/pop-sync/transport.js'
import { PullLoop } from '../../lib/pop-sync/pull-loop.js'
import { buildCoreApp } from '../../server/app.js'
import { buildPopApiApp, popApiTlsFromCa } from '../../server/pop-api.js'
import { buildPopApp } from '../../pop-agent/app.js'
import { startFakePaddle, type FakePaddle } from '../fake-paddle/server.js'
import { messageOf, Steps, type StepRecord } from './steps.js'
import {
  checkLookup,
  removeCommand,
  type Check,
  type DemoReport,
  type PopReport,
  type Registered,
} from './report.js'

export { formatReport, removeCommand, type DemoReport } from './report.js'

export const POP_IDS = ['pop-a', 'pop-b'] as const
export const RSYNC_MODULE = 'clavitor-store'

/** sh -c guard: runs `rsync "$@"`, kills it (SIGTERM) at EOF on stdin, exits with its status. */
const RSYNCD_GUARD = 'exec 3<&0; rsync "$@" & p=$!; (read _ <&3; kill $p 2>/dev/null) & wait $p'

export interface DemoOptions {
  /** The data folder (created; must be empty or missing). */
  dataDir: string
  /** One line per step (progress). */
  write: (line: string) => void
  /** How many P0s to register (each one WL3; the first gets a second version). Default 5. */
  credentials?: number
  /**
   * The POPs' regular pull while the demo keeps running, ms (their floor: each also holds a
   * long-poll on the core's feed and pulls within a second of a registration). Default 15000.
   */
  syncEveryMs?: number
  /** Aborted: no further step starts; what runs is closed and DemoFailed thrown. */
  signal?: AbortSignal
}

export interface DemoHandle {
  report: DemoReport
  /** Stops every server, the pulls and the rsync daemon; the data folder stays. */
  close(): Promise<void>
}

/** The failure of a demo run: the steps so far (all closed already) and what broke. */
export class DemoFailed extends Error {
  constructor(
    message: string,
    readonly steps: StepRecord[],
    cause?: unknown,
  ) {
    super(message, { cause })
  }
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  const s = createServer()
  await new Promise<void>((r, j) => {
    s.once('error', j)
    s.listen(0, host, r)
  })
  const port = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return port
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

async function waitForPort(
  port: number,
  child: ChildProcess,
  ms: number,
  spawnError: () => Error | null,
): Promise<void> {
  const end = Date.now() + ms
  for (;;) {
    const e = spawnError()
    if (e) throw new Error(`cannot run rsync: ${e.message}`, { cause: e })
    if (child.exitCode === 127) throw new Error('cannot run rsync: not found on PATH')
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`rsync --daemon exited (${child.exitCode ?? child.signalCode})`)
    const ok = await new Promise<boolean>((r) => {
      const c = connect({ host: '127.0.0.1', port }, () => {
        c.destroy()
        r(true)
      })
      c.once('error', () => r(false))
    })
    if (ok) return
    if (Date.now() > end)
      throw new Error(`rsync --daemon did not listen on ${port} within ${ms} ms`)
    await sleep(50)
  }
}

/** Runs every step; resolves with the report and a close(); on failure closes and throws DemoFailed. */
export async function runDemo(opts: DemoOptions): Promise<DemoHandle> {
  const dir = resolve(opts.dataDir)
  const steps = new Steps(opts.write, opts.signal)
  const closers: Array<{ name: string; fn: () => Promise<void> | void }> = []
  const onClose = (name: string, fn: () => Promise<void> | void) => closers.push({ name, fn })
  let closed = false
  let logStream: WriteStream | null = null
  let log: Logger | null = null

  const close = async (): Promise<void> => {
    if (closed) return
    closed = true
    for (const c of closers.reverse()) {
      try {
        await c.fn()
      } catch (err) {
        log?.error({ err, component: c.name }, 'close failed')
      }
    }
    if (logStream) {
      const s = logStream
      await new Promise<void>((r) => s.end(r))
    }
  }

  try {
    const report = await demoSteps()
    return { report, close }
  } catch (err) {
    await close()
    throw new DemoFailed(messageOf(err), steps.records, err)
  }

  async function demoSteps(): Promise<DemoReport> {
    const coreDir = join(dir, 'core')
    const rsyncDir = join(dir, 'rsyncd')
    const logFile = join(dir, 'demo.log')

    // data folder and log ------------------------------------------------------------
    await steps.run(
      'data folder',
      () => {
        mkdirSync(coreDir, { recursive: true })
        mkdirSync(rsyncDir, { recursive: true, mode: 0o700 })
        logStream = createWriteStream(logFile, { flags: 'a', mode: 0o600 })
        log = createLogger({
          level: process.env.CLAVITOR_LOG_LEVEL ?? 'info',
          base: { demo: true },
          destination: logStream,
        })
      },
      () => `${dir} (logs: ${logFile})`,
    )
    const lg = log!

    // fake Paddle, webhooks to the core's port ---------------------------------------------
    const corePort = await freePort()
    // /metrics is never anonymous (docs/security.md): the demo's apps serve it behind this token
    const metricsToken = randomBytes(24).toString('base64url')
    const coreUrl = `http://localhost:${corePort}`
    const coreLocal = `http://127.0.0.1:${corePort}` // what this script calls (no DNS)
    const paddleKey = `pdl_sdbx_apikey_demo${randomBytes(8).toString('hex')}`
    const fake: FakePaddle = await steps.run(
      'fake Paddle',
      async () => {
        const f = await startFakePaddle({
          host: '127.0.0.1',
          port: 0,
          apiKey: paddleKey,
          secret: `pdl_ntfset_demo_${randomBytes(12).toString('hex')}`,
          webhookUrl: `${coreLocal}/webhooks/paddle`,
        })
        onClose('fake paddle', () => f.close())
        return f
      },
      (f) => `${f.url}, webhooks to ${coreUrl}/webhooks/paddle`,
    )

    // CA and server certificate ----------------------------------------------------------
    await steps.run(
      'CA and server certificate',
      () => initCa(coreDir),
      () => caPaths(coreDir).dir,
    )

    // the core and its app ------------------------------------------------------------
    let setupUrl: string | null = null
    const core: Core = await steps.run(
      'core (openCore + buildCoreApp)',
      async () => {
        const c = await openCore({
          dataDir: coreDir,
          paddle: {
            apiUrl: fake.url,
            apiKey: paddleKey,
            webhookSecrets: [fake.secret],
            timeoutMs: 5000,
          },
        })
        onClose('core', () => c.close())
        const app = await buildCoreApp({
          core: c,
          fastify: { loggerInstance: lg.child({ role: 'core' }) },
          admin: { origin: coreUrl, onSetupUrl: (u) => (setupUrl = u) },
          metrics: { token: metricsToken },
        })
        onClose('core app', () => app.close())
        await app.listen({ host: '127.0.0.1', port: corePort })
        // audit anchors into the WORM store every 10 minutes, as `core serve` does
        const stopAnchors = startAnchorTimer(c.db, c.store, {
          onError: (err) => lg.error({ err }, 'audit anchor failed'),
          onAlarm: (files) => lg.error({ files }, 'foreign files at the audit anchor P0 skipped'),
        })
        onClose('anchor timer', stopAnchors)
        const blog = lg.child({ component: 'billing' })
        c.billing.startRetryWorker(
          (r) => r.attempted && blog.info({ report: r }, 'billing retry pass'),
          (err) => blog.error({ err }, 'billing retry pass failed'),
        )
        return c
      },
      (c) => {
        const pr = c.store.status().protection
        const seal = pr.sealing
          ? 'files sealed with chattr'
          : `files NOT sealed: ${pr.reason ?? 'off'}`
        return `${coreUrl} (protection ${pr.mode}, ${seal})`
      },
    )

    // POP API (mTLS) ------------------------------------------------------------------------
    const popApiUrl: string = await steps.run(
      'POP API (HTTPS, mTLS)',
      async () => {
        const app = await buildPopApiApp({
          core,
          tls: popApiTlsFromCa(coreDir),
          fastify: { loggerInstance: lg.child({ role: 'pop-api' }) },
        })
        onClose('pop api', () => app.close())
        await app.listen({ host: '127.0.0.1', port: 0 })
        return `https://127.0.0.1:${(app.server.address() as AddressInfo).port}`
      },
      (u) => u,
    )

    // POP enrolment: key + CSR on the POP, certificate from the CA, registry on the core ----
    const rsyncUsers = new Map<string, string>() // POP id → its rsync user
    for (const id of POP_IDS) {
      await steps.run(
        `enroll ${id}`,
        async () => {
          const popDir = join(dir, id)
          mkdirSync(popDir, { recursive: true })
          const { csrPem } = await popInit(popDir, id) // on the POP: its key never leaves
          const issued = await issuePopCert(coreDir, { popId: id, csrPem }) // on the CA
          const pp = popAuthPaths(popDir)
          writeFileSync(pp.cert, issued.certPem)
          copyFileSync(caPaths(coreDir).cert, pp.ca)
          // the same library call as `clavitor core pop add`: registry, audit row, and its
          // rsync account (a random password in the core's secrets file, 0600 on both sides)
          const { pop: rec, rsync } = enrolPop(
            core.db,
            coreDir,
            { id, certPem: issued.certPem, allowlist: ['127.0.0.1/32'] },
            { actor: 'demo' },
          )
          rsyncUsers.set(id, rsync.user)
          writeFileSync(popRsyncPasswordFile(popDir), rsync.password + '\n', { mode: 0o600 })
          return rec
        },
        (r) => `certificate ${r.certFingerprint.slice(0, 16)}…, allow ${r.allowlist.join(', ')}`,
      )
    }

    // rsync daemon: one read-only module over the core's store, per-POP users --------------
    const rsyncPort = await freePort()
    const rsyncBase = `rsync://127.0.0.1:${rsyncPort}/${RSYNC_MODULE}/`
    await steps.run(
      'rsync daemon',
      async () => {
        const secrets = rsyncdSecretsFile(coreDir) // written by enrolPop, 0600
        const root = process.getuid?.() === 0
        const conf = join(rsyncDir, 'rsyncd.conf')
        const text = renderRsyncdConfig({
          storeRoot: resolve(dataPaths(coreDir).store),
          module: RSYNC_MODULE,
          address: '127.0.0.1',
          port: rsyncPort,
          pidFile: join(rsyncDir, 'rsyncd.pid'),
          logFile: join(rsyncDir, 'rsyncd.log'),
          // as root: chroot into the store and read as nobody
          uid: 'nobody',
          gid: 'nogroup',
          useChroot: root,
          // its own lock file: the connection limit works without root too
          lockFile: join(rsyncDir, 'rsyncd.lock'),
          maxConnections: 20,
          auth: {
            hostsAllow: ['127.0.0.1/32'],
            authUsers: [...rsyncUsers.values()],
            secretsFile: secrets,
          },
        })
        // not root: no uid/gid lines, so the daemon stays this user (any explicit uid, even
        // our own, makes rsync call setgroups(), which only root may)
        writeFileSync(conf, root ? text : text.replace(/^\s*(uid|gid) = .*\n/gm, ''))
        // through a small sh guard: the daemon is killed when our end of its stdin pipe
        // closes, i.e. on close() below and also when this process dies (even SIGKILL)
        const child = spawn(
          'sh',
          ['-c', RSYNCD_GUARD, 'rsync', '--daemon', '--no-detach', `--config=${conf}`],
          { stdio: ['pipe', 'ignore', 'pipe'] },
        )
        let stderr = ''
        child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()))
        const exited = new Promise<void>((r) => child.once('exit', () => r()))
        let spawnError: Error | null = null
        child.once('error', (err) => (spawnError = err))
        onClose('rsyncd', async () => {
          child.stdin!.end()
          if (child.exitCode === null && child.signalCode === null) {
            await Promise.race([exited, sleep(5000)])
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
          }
        })
        try {
          await waitForPort(rsyncPort, child, 5000, () => spawnError)
        } catch (err) {
          throw new Error(`${messageOf(err)}${stderr ? `: ${stderr.trim()}` : ''}`, { cause: err })
        }
      },
      () => `${rsyncBase} (users ${[...rsyncUsers.values()].join(', ')}, hosts allow 127.0.0.1/32)`,
    )

    // billing: MSP → customer → department, product + price, address ------------------------
    const b = core.billing
    const tree = await steps.run(
      'MSP, customer, department, product, price (Billing → Paddle)',
      async () => {
        const msp = await b.create('customers', { email: 'msp@demo.example', name: 'Demo MSP' })
        await b.create('discounts', {
          description: 'Demo MSP margin',
          type: 'percentage',
          amount: '20',
          msp_id: msp.id,
        })
        const customer = await b.create('customers', {
          email: 'acme@demo.example',
          name: 'Acme',
          parent_id: msp.id,
        })
        const department = await b.create('customers', {
          email: 'it@acme.demo.example',
          name: 'Acme IT',
          parent_id: customer.id,
        })
        const address = await b.create('addresses', {
          customer_id: customer.id,
          country_code: 'DE',
          city: 'Berlin',
        })
        const product = await b.create('products', { name: 'Clavitor vault', tax_category: 'saas' })
        const price = await b.create('prices', {
          product_id: product.id,
          description: 'Vault, monthly',
          unit_amount: '1200',
          currency_code: 'EUR',
          billing_interval: 'month',
        })
        const rows = [msp, customer, department, address, product, price]
        const notSynced = rows.filter((r) => r.state !== 'synced')
        if (notSynced.length)
          throw new Error(
            `not at Paddle: ${notSynced.map((r) => `${String(r.id)} (${String(r.last_error)})`).join(', ')}`,
          )
        return {
          msp: String(msp.id),
          customer: String(customer.id),
          department: String(department.id),
          address: String(address.id),
          product: String(product.id),
          price: String(price.id),
        }
      },
      (t) => `${t.msp} → ${t.customer} → ${t.department}; ${t.price}`,
    )

    // a plan (tier): the price sells it, with its limits ----------------------------------
    const nP0 = opts.credentials ?? 5
    const plan = await steps.run(
      'plan "Team" sold by the price (limits: 1 vault, devices per vault)',
      () =>
        b.createPlan(
          {
            name: 'Team',
            price_ids: [tree.price],
            max_vaults: 1,
            max_devices_per_vault: nP0 + 1,
          },
          { actor: 'demo' },
        ),
      (p) => `${p.id}: ${p.max_vaults} vault, ${p.max_devices_per_vault} devices per vault`,
    )

    // subscription through a billed transaction; wait until linked and active ---------------
    const sub = await steps.run(
      'subscription (Billing → fake Paddle → webhook), linked and active',
      async () => {
        const s = await b.create('subscriptions', {
          customer_id: tree.customer,
          address_id: tree.address,
          currency_code: 'EUR',
          items: [{ price_id: tree.price, quantity: 1 }],
        })
        const id = String(s.id)
        const end = Date.now() + 20_000
        let forced = false
        for (;;) {
          const row = b.get('subscriptions', id)
          if (row.state === 'synced' && row.paddle_id && row.status === 'active') return row
          if (Date.now() > end)
            throw new Error(
              `subscription ${id} not linked: state ${String(row.state)}, status ${String(row.status)}, ${String(row.last_error)}`,
            )
          if (!forced && Date.now() > end - 15_000) {
            forced = true
            await b.retryOnce({ force: true })
          }
          await sleep(50)
        }
      },
      (r) => `${String(r.id)} = ${String(r.paddle_id)}, ${String(r.status)}`,
    )

    // vault + API key -----------------------------------------------------------------
    const vault = await steps.run(
      'vault and API key',
      () => {
        const v = core.credentials.createVault({
          customerId: tree.customer,
          subscriptionId: String(sub.id),
          name: 'Acme laptops',
          actor: 'demo',
        })
        const k = core.credentials.createApiKey(v.id, { actor: 'demo' })
        return { id: v.id, keyId: k.id, key: k.key }
      },
      (v) => `${v.id}, key ${v.keyId}`,
    )

    // credentials over HTTP ----------------------------------------------------------
    const latest = new Map<string, Registered>()
    let registrations = 0
    await steps.run(
      'register credentials (POST /api/v1/credentials/register)',
      async () => {
        const p0s = Array.from({ length: nP0 }, () => randomBytes(16).toString('hex'))
        const plan = [...p0s, ...(p0s[0] ? [p0s[0]] : [])] // the first P0 gets a second version
        for (const p0 of plan) {
          const wl3 = randomBytes(200 + Math.floor(Math.random() * 400))
          const res = await fetch(`${coreLocal}/api/v1/credentials/register`, {
            method: 'POST',
            headers: {
              authorization: `Bearer ${vault.key}`,
              'content-type': 'application/json',
            },
            body: JSON.stringify({ p0, wl3: wl3.toString('base64') }),
          })
          const body = (await res.json()) as {
            sha256?: string
            version?: number
            error?: { code: string; message: string }
          }
          if (res.status !== 201)
            throw new Error(
              `register ${p0}: HTTP ${res.status} ${body.error ? `${body.error.code}: ${body.error.message}` : ''}`,
            )
          const sha = createHash('sha256').update(wl3).digest('hex')
          if (body.sha256 !== sha)
            throw new Error(
              `register ${p0}: the core answered sha256 ${body.sha256}, expected ${sha}`,
            )
          latest.set(p0, { p0, wl3, sha256: sha, version: body.version ?? 0 })
          registrations++
        }
      },
      () => `${registrations} registrations, ${latest.size} P0s (one with 2 versions)`,
    )

    // the plan's limits: what the vault reads, and a second vault refused ------------------
    const limits = await steps.run(
      'plan limits (GET /api/v1/vault/status; a second vault refused)',
      async () => {
        const res = await fetch(`${coreLocal}/api/v1/vault/status`, {
          headers: { authorization: `Bearer ${vault.key}` },
        })
        const status = (await res.json()) as VaultStatus
        if (res.status !== 200) throw new Error(`vault status: HTTP ${res.status}`)
        let refused = ''
        try {
          core.credentials.createVault({
            customerId: tree.customer,
            subscriptionId: String(sub.id),
            name: 'one vault too many',
            actor: 'demo',
          })
        } catch (err) {
          refused = (err as { code?: string }).code ?? String(err)
        }
        return { status, refused }
      },
      (l) =>
        `${l.status.plans.map((p) => p.name).join(', ')}: vaults ${l.status.usage.vaults}/${l.status.limits.max_vaults}, devices ${l.status.usage.devices}/${l.status.limits.max_devices_per_vault}; 2nd vault: ${l.refused || 'NOT refused'}`,
    )

    // the subscription's life led by us: a cancel at the period's end; the revenue report --
    const lifecycle = await steps.run(
      'cancel at period end (ours first, then Paddle); revenue by MSP margin',
      async () => {
        const row = await b.changeSubscription(
          String(sub.id),
          { action: 'cancel', effective_from: 'next_billing_period' },
          { actor: 'demo' },
        )
        const atPaddle = fake.state.subscriptions.get(String(sub.paddle_id))
        const scheduled = (atPaddle?.scheduled_change ?? null) as { action?: string } | null
        if (row.state !== 'synced' || scheduled?.action !== 'cancel')
          throw new Error(
            `cancel not at Paddle: state ${String(row.state)}, Paddle ${JSON.stringify(scheduled)}, ${String(row.last_error)}`,
          )
        return { row, revenue: b.revenueByDiscount() }
      },
      (l) =>
        `ends ${String((l.row.scheduled_change as { effective_at?: string } | null)?.effective_at)}; ` +
        l.revenue
          .map((r) => `${r.discount_id ?? 'no discount'} ${r.revenue} ${r.currency_code}`)
          .join(', '),
    )

    // selling to a card customer: our row first, then a Paddle transaction with automatic
    // collection whose checkout link is what the customer gets; the customer pays at the
    // fake, Paddle's subscription.created webhook links it ----------------------------------
    const card = await steps.run(
      'card checkout: subscription for a card customer (ours first, then a Paddle transaction with automatic collection)',
      async () => {
        const s = await b.create('subscriptions', {
          customer_id: tree.customer,
          address_id: tree.address,
          currency_code: 'EUR',
          collection_mode: 'automatic',
          items: [{ price_id: tree.price, quantity: 1 }],
        })
        const id = String(s.id)
        const checkoutUrl = typeof s.checkout_url === 'string' ? s.checkout_url : null
        if (!checkoutUrl)
          throw new Error(
            `no checkout link for ${id}: state ${String(s.state)}, ${String(s.last_error)}`,
          )
        const txn = b.get('transactions', String(s.origin_transaction_id))
        fake.payTransaction(String(txn.paddle_id)) // the customer pays at checkout
        const end = Date.now() + 20_000
        for (;;) {
          const row = b.get('subscriptions', id)
          if (row.state === 'synced' && row.paddle_id && row.status === 'active')
            return { row, checkoutUrl }
          if (Date.now() > end)
            throw new Error(
              `card subscription ${id} not linked after payment: state ${String(row.state)}, status ${String(row.status)}, ${String(row.last_error)}`,
            )
          await sleep(50)
        }
      },
      (c) =>
        `${String(c.row.id)}: checkout ${c.checkoutUrl}; paid → ${String(c.row.paddle_id)} ${String(c.row.status)}`,
    )

    // an audit anchor into the WORM store (what `core serve` does every 10 minutes) -------
    await steps.run(
      'audit anchor',
      () => writeAnchor(core.db, core.store),
      (a) => (a ? `seq ${a.seq}` : 'no new events'),
    )

    // POPs: open, sync over mTLS feed + rsync, serve lookups --------------------------------
    const pops: Array<{ id: string; pop: Pop; url: string; outcome: RunOutcome }> = []
    const trust = core.store.publicKey
    if (!trust) throw new Error('the core store has no signing key')
    for (const id of POP_IDS) {
      const p = await steps.run(
        `sync ${id} (feed over mTLS, rsync as ${id})`,
        async () => {
          const popDir = join(dir, id)
          const client = PopApiClient.fromDataDir(popDir, { baseUrl: popApiUrl, popId: id })
          onClose(`${id} client`, () => client.close())
          const pop = await openPop({
            dataDir: popDir,
            popId: id,
            feed: requestFeedClient(client),
            rsyncSource: `rsync://${rsyncUsers.get(id)!}@127.0.0.1:${rsyncPort}/${RSYNC_MODULE}/`,
            rsync: {
              extraArgs: [`--password-file=${popRsyncPasswordFile(popDir)}`],
            },
            initTrustKeys: [trust],
            log: lg.child({ pop: id }),
          })
          onClose(id, () => pop.close())
          const outcome = await pop.sync.run()
          const app: FastifyInstance = await buildPopApp({
            pop,
            metrics: { token: metricsToken },
            fastify: { loggerInstance: lg.child({ pop: id, component: 'http' }) },
          })
          onClose(`${id} app`, () => app.close())
          await app.listen({ host: '127.0.0.1', port: 0 })
          const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
          return { id, pop, url, outcome }
        },
        (p) =>
          `sealed ${p.outcome.sealed}, pages ${p.outcome.pages}, lag ${p.outcome.lag_us === null ? 'unknown' : `${(p.outcome.lag_us / 1e6).toFixed(1)} s`}, lookups on ${p.url}`,
      )
      pops.push(p)
    }

    // lookups on both POPs: bytes, ETag, .cla signature (offline, the core's public key) ---
    const ring = makeKeyRing([trust])
    const perPop = new Map<string, { ok: number; failed: number }>(
      POP_IDS.map((id) => [id, { ok: 0, failed: 0 }]),
    )
    const failures: string[] = []
    await steps.run(
      'WL3 lookups on both POPs (GET /api/v1/wl3/{p0}, .cla verified offline)',
      async () => {
        for (const p of pops) {
          for (const r of latest.values()) {
            const why = await checkLookup(p.url, r, ring)
            const c = perPop.get(p.id)!
            if (why) {
              c.failed++
              failures.push(`${p.id} ${r.p0}: ${why}`)
            } else c.ok++
          }
        }
      },
      () =>
        failures.length
          ? `${failures.length} of ${pops.length * latest.size} failed, first: ${failures[0]}`
          : `${pops.length * latest.size} lookups, bytes + sha256 ETag + Ed25519 signature match`,
      () => failures.length === 0,
    )

    // a new registration reaches both POPs within seconds: each POP holds a long-poll on
    // the core's feed and pulls as soon as the core answers (the hourly floor stays) -----
    const every = opts.syncEveryMs ?? 15_000
    const loops = pops.map(
      (p) =>
        new PullLoop({
          sync: p.pop.sync,
          // the demo's floor: a regular run every --sync-every seconds instead of hourly
          schedule: { intervalMs: every, slotMs: every, jitterMs: 0, runAtStart: false },
          log: lg.child({ pop: p.id, component: 'wake' }),
        }),
    )
    for (const l of loops) l.start()
    onClose('pull loops', async () => {
      await Promise.all(loops.map((l) => l.stop()))
    })
    const propagation = await steps.run(
      'a new version of a credential reaches both POPs by the feed long-poll',
      async () => {
        // a new version of a registered P0 (a new device would count against the plan)
        const p0 = [...latest.keys()][0]
        if (!p0) throw new Error('no credential registered to update')
        const wl3 = randomBytes(300)
        const sha = createHash('sha256').update(wl3).digest('hex')
        const started = performance.now()
        const res = await fetch(`${coreLocal}/api/v1/credentials/register`, {
          method: 'POST',
          headers: { authorization: `Bearer ${vault.key}`, 'content-type': 'application/json' },
          body: JSON.stringify({ p0, wl3: wl3.toString('base64') }),
        })
        if (res.status !== 201) throw new Error(`register ${p0}: HTTP ${res.status}`)
        const version = ((await res.json()) as { version?: number }).version ?? 0
        latest.set(p0, { p0, wl3, sha256: sha, version })
        const ms = await Promise.all(
          pops.map(async (p) => {
            // a deadline against a hang, well under the --sync-every floor's first run
            const until = performance.now() + Math.min(every, 10_000)
            for (;;) {
              const r = await fetch(`${p.url}/api/v1/wl3/${p0}`)
              if (r.status === 200 && r.headers.get('etag') === `"${sha}"`)
                return Math.round(performance.now() - started)
              if (performance.now() > until)
                throw new Error(`${p.id} does not serve ${p0} yet (last answer ${r.status})`)
              await new Promise((w) => setTimeout(w, 20))
            }
          }),
        )
        // served: now let each wake run finish (its report to the core) before the checks
        for (const p of pops)
          while (p.pop.sync.running) await new Promise((w) => setTimeout(w, 20))
        return { ms, wakes: loops.map((l) => l.wake?.stats.wakes ?? 0) }
      },
      (x) =>
        pops.map((p, i) => `${p.id} in ${x.ms[i]} ms`).join(', ') +
        ` after the 201 (wake pulls: ${x.wakes.join(', ')})`,
      (x) => x.wakes.every((w) => w > 0),
    )

    // report ----------------------------------------------------------------------------
    const r = await steps.run(
      'checks',
      () => buildReport(),
      (x) => `${x.checks.filter((c) => c.ok).length}/${x.checks.length} passed`,
      (x) => x.ok,
    )
    return r

    async function buildReport(): Promise<DemoReport> {
      const coreBlobs = blobPaths(core.store.db)
      const anchors = scanAnchors(coreDir, core.store).trusted
      const chain = verifyChain(core.db, { anchors })
      const popChains = pops.map((p) => verifyChain(p.pop.db))
      const view = new Map(listPopSyncStates(core.db).map((x) => [x.id, x.sync]))
      const pending = b.pending().length
      const popReports: PopReport[] = []
      for (const p of pops) {
        const st = p.pop.sync.status()
        const held = blobPaths(p.pop.store.db)
        const v = view.get(p.id) ?? null
        popReports.push({
          id: p.id,
          url: p.url,
          metrics_url: (await answers(`${p.url}/metrics`, metricsToken))
            ? `${p.url}/metrics`
            : null,
          cursor: st.cursor,
          lag_us: st.last_run?.lag_us ?? null,
          blobs: held.length,
          sealed: p.outcome.sealed,
          converged: held.join('\n') === coreBlobs.join('\n'),
          core_view: v ? { cursor: v.cursor, lag_us: v.lag_us, last_error: v.last_error } : null,
          report_error: p.outcome.report_error,
          lookups: perPop.get(p.id)!,
        })
      }
      const subRow = b.get('subscriptions', String(sub.id))
      const total = pops.length * latest.size
      const okLookups = total - failures.length
      const checks: Check[] = [
        {
          name: 'subscription active',
          ok: subRow.status === 'active' && subRow.state === 'synced',
          detail: `${String(subRow.id)} ${String(subRow.status)}, ${String(subRow.state)} as ${String(subRow.paddle_id)}`,
        },
        { name: 'no pending dual-writes', ok: pending === 0, detail: `${pending} pending` },
        {
          name: 'cancel at period end, led by us',
          ok:
            (lifecycle.row.scheduled_change as { action?: string } | null)?.action === 'cancel' &&
            subRow.status === 'active',
          detail: `scheduled ${JSON.stringify(lifecycle.row.scheduled_change)}`,
        },
        {
          name: 'plan limits enforced',
          ok:
            limits.refused === 'CLA_ERR_PLAN_VAULT_LIMIT' &&
            limits.status.plans[0]?.id === plan.id &&
            limits.status.usage.devices === latest.size &&
            limits.status.can_enrol_device,
          detail: `${plan.name}: 2nd vault ${limits.refused || 'not refused'}, ${limits.status.usage.devices}/${String(limits.status.limits.max_devices_per_vault)} devices`,
        },
        ...popReports.map((p) => ({
          name: `${p.id} converged`,
          ok: p.converged && p.lag_us === 0,
          detail: `${p.blobs}/${coreBlobs.length} blobs, lag ${p.lag_us ?? '-'} µs`,
        })),
        ...popReports.map((p) => ({
          name: `core has ${p.id}'s report`,
          ok: p.core_view !== null && p.core_view.cursor === p.cursor && !p.core_view.last_error,
          detail: p.report_error
            ? `report failed: ${p.report_error}`
            : `cursor ${p.core_view?.cursor ?? '-'}`,
        })),
        {
          name: 'a new version reached every POP by the long-poll',
          ok: propagation.wakes.every((w) => w > 0),
          detail: pops.map((p, i) => `${p.id} ${propagation.ms[i]} ms`).join(', '),
        },
        {
          name: 'every lookup matched',
          ok: failures.length === 0 && total > 0,
          detail: `${okLookups}/${total}`,
        },
        {
          name: 'core audit chain verified',
          ok: chain.ok,
          detail: chain.ok
            ? `${chain.count} events, ${anchors.length} anchor(s)`
            : `broken at #${chain.firstBrokenId}: ${chain.reason}`,
        },
        {
          name: 'POP audit chains verified',
          ok: popChains.every((c) => c.ok),
          detail: popChains.map((c, i) => `${pops[i]!.id} ${c.ok ? 'ok' : 'BROKEN'}`).join(', '),
        },
      ]
      return {
        ok: checks.every((c) => c.ok),
        data_dir: dir,
        remove_command: removeCommand(dir),
        log_file: logFile,
        core: {
          url: coreUrl,
          admin_url: `${coreUrl}/admin/`,
          admin_setup_url: setupUrl,
          metrics_url: `${coreUrl}/metrics`,
          metrics_token: metricsToken,
          pop_api_url: popApiUrl,
          rsync_url: rsyncBase,
          blobs: coreBlobs.length,
        },
        paddle: { url: fake.url },
        billing: {
          msp: tree.msp,
          customer: tree.customer,
          department: tree.department,
          product: tree.product,
          price: tree.price,
          subscription: {
            id: String(subRow.id),
            paddle_id: (subRow.paddle_id as string | null) ?? null,
            status: String(subRow.status),
            state: String(subRow.state),
          },
          card: {
            subscription: String(card.row.id),
            checkout_url: card.checkoutUrl,
            status: String(b.get('subscriptions', String(card.row.id)).status),
          },
          pending_dual_writes: pending,
        },
        vault: { id: vault.id, api_key_id: vault.keyId, api_key: vault.key },
        credentials: { p0s: latest.size, registrations },
        pops: popReports,
        lookups: { total, ok: okLookups, failed: failures.length, failures },
        audit: {
          ok: chain.ok,
          events: chain.ok ? chain.count : 0,
          anchors: anchors.length,
          pops_ok: popChains.every((c) => c.ok),
        },
        checks,
        steps: steps.records,
      }
    }
  }
}

function blobPaths(db: Core['db']): string[] {
  return blobIndex(db).paths()
}

async function answers(url: string, bearer: string): Promise<boolean> {
  try {
    const res = await fetch(url, {
      headers: { authorization: `Bearer ${bearer}` },
      signal: AbortSignal.timeout(2000),
    })
    await res.arrayBuffer()
    return res.status === 200
  } catch {
    return false
  }
}
