// `clavitor core …`: the storage core's own commands. Each area adds its subcommand as one
// block in register() below (or from its own module via `subcommand(program, 'core', …)`).
import { Option, type Command } from 'commander'
import { openCore } from '../../lib/core.js'
import { RECONCILE_INTERVAL_MS } from '../../lib/billing/billing.js'
import { claError } from '../../lib/errors.js'
import { createLogger } from '../../lib/log.js'
import { buildCoreApp } from '../../server/app.js'
import { startAnchorTimer } from '../../lib/audit/anchor.js'
import { parseTrustProxy } from '../../lib/auth/trust-proxy.js'
import { startRsyncAuditTimer } from '../../lib/core-sync/rsync-audit.js'
import { addPaddleOptions, paddleConfigFromFlags, type PaddleFlags } from './billing.js'
import { subcommand } from './common.js'
import {
  action,
  dataOption,
  metricsTokenOption,
  onShutdown,
  parseListen,
  readMetricsToken,
} from './common.js'

export function register(program: Command): void {
  const core = subcommand(program, 'core', 'core administration')

  // --- core serve (issue 3): the core's Fastify app, the billing retry worker ----------
  addPaddleOptions(
    core
      .command('serve')
      .description(
        'serve the core app (admin UI, credentials API, Paddle webhooks) and run the billing retry worker',
      )
      .addOption(dataOption())
      .addOption(
        new Option('--listen <host:port>', 'address to listen on')
          .env('CLAVITOR_LISTEN')
          .default('127.0.0.1:8080'),
      )
      .addOption(
        new Option(
          '--admin-origin <url>',
          'public origin of the admin UI (WebAuthn RP); default: each request',
        ).env('CLAVITOR_ADMIN_ORIGIN'),
      )
      .addOption(
        new Option(
          '--trust-proxy <proxies>',
          'the TLS proxy in front: its address(es)/CIDRs or loopback; its X-Forwarded-For/-Proto then name the client (default off)',
        ).env('CLAVITOR_TRUST_PROXY'),
      )
      .addOption(metricsTokenOption())
      .addOption(
        new Option('--rate-limit-key <n>', 'credentials API requests per vault API key per minute')
          .env('CLAVITOR_RATE_LIMIT_KEY')
          .default('120'),
      )
      .addOption(
        new Option(
          '--rate-limit-ip <n>',
          'credentials API requests per client address per minute (many devices may share one NAT address)',
        )
          .env('CLAVITOR_RATE_LIMIT_IP')
          .default('1200'),
      )
      .addOption(
        new Option(
          '--reconcile-interval-ms <ms>',
          "a billing reconcile pass (Paddle's lists into our rows) this often; 0 = never",
        )
          .env('CLAVITOR_BILLING_RECONCILE_MS')
          .default(String(RECONCILE_INTERVAL_MS)),
      )
      .addOption(
        new Option(
          '--rsync-log <file>',
          "the rsync daemon's log file (rsyncd-config --log-file): every minute, one audit row per POP rsync session",
        ).env('CLAVITOR_RSYNC_LOG'),
      ),
  ).action(
    action(
      async (
        o: PaddleFlags & {
          data: string
          listen: string
          adminOrigin?: string
          trustProxy?: string
          metricsTokenFile?: string
          rsyncLog?: string
          reconcileIntervalMs: string
          rateLimitKey: string
          rateLimitIp: string
        },
      ) => {
        for (const [flag, v] of [
          ['--rate-limit-key', o.rateLimitKey],
          ['--rate-limit-ip', o.rateLimitIp],
        ] as const) {
          if (!/^[1-9]\d*$/.test(v))
            throw claError(
              'CLA_ERR_INVALID_OPTION',
              `${flag} must be a whole number ≥ 1, got "${v}"`,
            )
        }
        if (!/^\d+$/.test(o.reconcileIntervalMs))
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `--reconcile-interval-ms must be a whole number, got "${o.reconcileIntervalMs}"`,
          )
        const { host, port } = parseListen(o.listen)
        const trustProxy = parseTrustProxy(o.trustProxy)
        const metrics = readMetricsToken(o.metricsTokenFile)
        const log = createLogger({ base: { role: 'core' } })
        const c = await openCore({ dataDir: o.data, paddle: paddleConfigFromFlags(o) })
        const app = await buildCoreApp({
          core: c,
          fastify: { loggerInstance: log },
          trustProxy,
          credentials: {
            rateLimitMax: Number(o.rateLimitKey),
            ipRateLimitMax: Number(o.rateLimitIp),
          },
          ...(metrics ? { metrics } : {}),
          ...(o.adminOrigin ? { admin: { origin: o.adminOrigin } } : {}),
        })
        try {
          await app.listen({ host, port })
        } catch (err) {
          await app.close()
          await c.close()
          throw err
        }
        const blog = log.child({ component: 'billing' })
        c.billing.startWorkers({
          reconcileIntervalMs: Number(o.reconcileIntervalMs),
          onRetryReport: (r) => {
            if (r.attempted) blog.info({ report: r }, 'billing retry pass')
          },
          onReconcileReport: (r) => {
            if (r.changes.length || r.parked.length)
              blog.info({ changes: r.changes.length, parked: r.parked }, 'billing reconcile pass')
          },
          onError: (err, worker) => blog.error({ err }, `billing ${worker} pass failed`),
        })
        // the replication log's head checkpoint stays freshly signed while the core is idle
        c.checkpoints.start()
        // audit anchors (lib/audit/anchor.ts): the chain head into the WORM store every
        // 10 minutes, from this process because it is the store's writer.
        const stopAnchors = startAnchorTimer(c.db, c.store, {
          onError: (err) => log.error({ err }, 'audit anchor failed'),
          onAlarm: (files) =>
            log.error(
              { files, alarm: true },
              'files at the audit anchor P0 that the anchor writer did not make: skipped (audit.alarm anchor_foreign)',
            ),
        })
        // the rsync channel's sessions into the audit trail (lib/core-sync/rsync-audit.ts)
        const stopRsyncAudit = o.rsyncLog
          ? startRsyncAuditTimer(c.db, o.rsyncLog, {
              onError: (err) => log.error({ err, alarm: true }, 'rsync audit pass failed'),
            })
          : () => {}
        log.info(
          {
            listen: o.listen,
            data: o.data,
            trust_proxy: trustProxy,
            metrics: metrics ? 'token' : 'off',
            paddle: c.billing.paddle?.baseUrl ?? null,
            webhook_secrets: c.billing.webhookOptions.secrets.length,
          },
          'core listening',
        )
        onShutdown(
          async (signal) => {
            log.info({ signal }, 'shutting down')
            stopAnchors()
            stopRsyncAudit()
            await app.close()
            await c.close() // stops the retry worker, waits for a pass in progress
          },
          (err) => log.error({ err }, 'shutdown failed'),
        )
      },
    ),
  )

  // --- next block: `core <name>` for another area ---------------------------------------
}
