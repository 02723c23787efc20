// `clavitor billing create|update|show|list|pending|retry|duplicates|tree|revenue|plan|entitlements`
// (the dual-write layer and plans, lib/billing) and `clavitor paddle fake` (the local fake Paddle for tests and demos).
// Paddle is configured by flags or CLAVITOR_PADDLE_* (see docs/billing.md, docs/cli.md).
import { Option, type Command } from 'commander'
import type { Core } from '../../lib/core.js'
import { claError } from '../../lib/errors.js'
import { splitSecrets, type PaddleConfig } from '../../lib/billing/config.js'
import { ENTITY_NAMES, type EntityName } from '../../lib/billing/entities.js'
import type { Plan } from '../../lib/billing/plans.js'
import { PRORATION_MODES } from '../../lib/billing/subscription-lifecycle.js'
import { listEvents as listStoredEvents, replayEvent } from '../../lib/billing/webhooks.js'
import { startFakePaddle } from '../fake-paddle/server.js'
import {
  action,
  dataOption,
  jsonOption,
  onShutdown,
  parseListen,
  printJson,
  withCore,
} from './common.js'

export interface PaddleFlags {
  paddleApiUrl?: string
  paddleApiKey?: string
  paddleWebhookSecret?: string
  paddleTimeoutMs?: string
  paddleWebhookToleranceS?: string
  retryAfterMs?: string
}

/** The Paddle options shared by `billing …` and `core serve`. */
export function addPaddleOptions(cmd: Command): Command {
  return cmd
    .addOption(
      new Option(
        '--paddle-api-url <url>',
        'Paddle API base URL (sandbox, live, or the fake); unset = writes stay pending',
      ).env('CLAVITOR_PADDLE_API_URL'),
    )
    .addOption(
      new Option('--paddle-api-key <key>', 'Paddle API key (Bearer)').env(
        'CLAVITOR_PADDLE_API_KEY',
      ),
    )
    .addOption(
      new Option(
        '--paddle-webhook-secret <list>',
        'webhook secret(s), comma-separated for rotation',
      ).env('CLAVITOR_PADDLE_WEBHOOK_SECRET'),
    )
    .addOption(
      new Option('--paddle-timeout-ms <ms>', 'per-request timeout')
        .env('CLAVITOR_PADDLE_TIMEOUT_MS')
        .default('10000'),
    )
    .addOption(
      new Option('--paddle-webhook-tolerance-s <s>', 'accepted |now − ts| of webhook signatures')
        .env('CLAVITOR_PADDLE_WEBHOOK_TOLERANCE_S')
        .default('10'),
    )
    .addOption(
      new Option('--retry-after-ms <ms>', 'retry rows pending longer than this')
        .env('CLAVITOR_BILLING_RETRY_AFTER_MS')
        .default('300000'),
    )
}

function whole(name: string, v: string | undefined, dflt: number): number {
  if (v === undefined) return dflt
  if (!/^\d+$/.test(v))
    throw claError('CLA_ERR_INVALID_OPTION', `${name} must be a whole number, got "${v}"`)
  return Number(v)
}

export function paddleConfigFromFlags(o: PaddleFlags): PaddleConfig {
  if (o.paddleApiUrl && !/^https?:\/\/[^/]+/.test(o.paddleApiUrl)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `--paddle-api-url must be http(s)://host[:port], got "${o.paddleApiUrl}"`,
    )
  }
  return {
    ...(o.paddleApiUrl ? { apiUrl: o.paddleApiUrl } : {}),
    ...(o.paddleApiKey ? { apiKey: o.paddleApiKey } : {}),
    webhookSecrets: splitSecrets(o.paddleWebhookSecret),
    timeoutMs: whole('--paddle-timeout-ms', o.paddleTimeoutMs, 10_000),
    webhookToleranceS: whole('--paddle-webhook-tolerance-s', o.paddleWebhookToleranceS, 10),
    retry: { minAgeMs: whole('--retry-after-ms', o.retryAfterMs, 300_000) },
  }
}

/** HOST:PORT or [v6]:PORT → {host, port}. */
function parseJsonArg(v: string): unknown {
  try {
    return JSON.parse(v)
  } catch (cause) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `--json is not valid JSON: ${(cause as Error).message}`,
      { cause },
    )
  }
}

/** Opens the core with the Paddle flags, runs `fn`, always closes. */
const withBillingCore = <T>(
  o: PaddleFlags & { data: string },
  fn: (core: Core) => Promise<T> | T,
) => withCore({ dataDir: o.data, paddle: paddleConfigFromFlags(o) }, fn)

const entityHelp = `one of ${ENTITY_NAMES.join(', ')}`

export function register(program: Command): void {
  const billing = program
    .command('billing')
    .description('billing rows written here first, then at Paddle (dual write)')

  addPaddleOptions(
    billing
      .command('create')
      .description(
        'validate and write a row, push it to Paddle, print the row (state synced | pending | failed)',
      )
      .argument('<entity>', entityHelp)
      .addOption(dataOption())
      .requiredOption('--json <object>', 'the row as JSON, e.g. \'{"email":"a@example.com"}\''),
  ).action(
    action(async (entity: string, o: PaddleFlags & { data: string; json: string }) => {
      await withBillingCore(o, async (core) =>
        printJson(await core.billing.create(entity, parseJsonArg(o.json))),
      )
    }),
  )

  addPaddleOptions(
    billing
      .command('update')
      .description('change a row (partial JSON), push it to Paddle, print the row')
      .argument('<entity>', entityHelp)
      .argument('<id>', 'our id (cus_…, prd_…)')
      .addOption(dataOption())
      .requiredOption('--json <object>', 'the fields to change as JSON'),
  ).action(
    action(async (entity: string, id: string, o: PaddleFlags & { data: string; json: string }) => {
      await withBillingCore(o, async (core) =>
        printJson(await core.billing.update(entity, id, parseJsonArg(o.json))),
      )
    }),
  )

  billing
    .command('show')
    .description('print one row as JSON')
    .argument('<entity>', entityHelp)
    .argument('<id>', 'our id')
    .addOption(dataOption())
    .action(
      action(async (entity: string, id: string, o: { data: string }) => {
        await withBillingCore(o, (core) => printJson(core.billing.get(entity, id)))
      }),
    )

  billing
    .command('list')
    .description('print rows of one entity as JSON, newest first')
    .argument('<entity>', entityHelp)
    .addOption(dataOption())
    .addOption(
      new Option('--state <state>', 'only rows in this state').choices([
        'synced',
        'pending',
        'failed',
      ]),
    )
    .addOption(new Option('--limit <n>', 'at most this many rows').default('100'))
    .action(
      action(
        async (
          entity: string,
          o: { data: string; state?: 'synced' | 'pending' | 'failed'; limit: string },
        ) => {
          await withBillingCore(o, (core) =>
            printJson(
              core.billing.list(entity, {
                limit: whole('--limit', o.limit, 100),
                ...(o.state ? { state: o.state } : {}),
              }),
            ),
          )
        },
      ),
    )

  billing
    .command('pending')
    .description(
      'rows not yet in sync with Paddle: pending (retried) and failed (not retried), with attempts and last error',
    )
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; json?: boolean }) => {
        await withBillingCore(o, (core) => {
          const rows = core.billing.pending()
          if (o.json) return printJson(rows)
          if (rows.length === 0) return void process.stdout.write('nothing pending\n')
          for (const r of rows) {
            const since = r.pending_since ? new Date(r.pending_since / 1000).toISOString() : '-'
            process.stdout.write(
              `${r.state.padEnd(7)} ${r.entity.padEnd(13)} ${r.id}  since ${since}  attempts ${r.attempts}  ${r.last_error ?? ''}\n`,
            )
          }
        })
      }),
    )

  addPaddleOptions(
    billing
      .command('retry')
      .description(
        'push pending rows to Paddle (rows pending longer than --retry-after-ms, whose backoff has passed)',
      )
      .addOption(dataOption())
      .option('--once', 'one pass, then exit (the core serve process runs the worker continuously)')
      .option(
        '--force',
        'ignore --retry-after-ms and the per-row backoff: try every pending row now (a create still settling is only looked for)',
      )
      .addOption(jsonOption()),
  ).action(
    action(
      async (
        o: PaddleFlags & { data: string; once?: boolean; force?: boolean; json?: boolean },
      ) => {
        if (!o.once)
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            'use --once for a single pass; `clavitor core serve` runs the retry worker',
          )
        await withBillingCore(o, async (core) => {
          if (!core.billing.paddle)
            throw claError(
              'CLA_ERR_PADDLE_NOT_CONFIGURED',
              'set --paddle-api-url and --paddle-api-key (or CLAVITOR_PADDLE_API_URL/KEY)',
            )
          const r = await core.billing.retryOnce({ force: Boolean(o.force) })
          if (o.json) return printJson(r)
          process.stdout.write(
            `attempted ${r.attempted}, synced ${r.synced}, still pending ${r.pending} (settling ${r.settling}), failed ${r.failed}${r.rateLimitedUntil ? `, rate limited until ${new Date(r.rateLimitedUntil / 1000).toISOString()}` : ''}\n`,
          )
        })
      },
    ),
  )

  addPaddleOptions(
    billing
      .command('duplicates')
      .description(
        'find Paddle objects sharing one clavitor_id (products, prices, discounts, transactions); archive unused extra products/prices/discounts, report the rest; exit 1 when a person is needed',
      )
      .addOption(dataOption())
      .option('--dry-run', 'report only: archive nothing')
      .addOption(jsonOption()),
  ).action(
    action(async (o: PaddleFlags & { data: string; dryRun?: boolean; json?: boolean }) => {
      await withBillingCore(o, async (core) => {
        const r = await core.billing.duplicates({ resolve: !o.dryRun })
        if (r.needs_attention > 0) process.exitCode = 1
        if (o.json) return printJson(r)
        const scanned = Object.entries(r.scanned)
          .map(([e, n]) => `${n} ${e}`)
          .join(', ')
        process.stdout.write(
          `scanned ${scanned}: ${r.groups.length} duplicated, ${r.archived} archived, ${r.needs_attention} need a person\n`,
        )
        for (const g of r.groups)
          for (const x of g.extras)
            process.stdout.write(
              `${x.action.padEnd(16)} ${g.entity.padEnd(12)} ${g.clavitor_id} ${x.paddle_id} (kept ${g.kept ?? '-'}): ${x.reason}\n`,
            )
      })
    }),
  )

  billing
    .command('tree')
    .description('the customer hierarchy (MSP → customer → department) as JSON')
    .addOption(dataOption())
    .action(
      action(async (o: { data: string }) =>
        withBillingCore(o, (core) => printJson(core.billing.customerTree())),
      ),
    )

  billing
    .command('revenue')
    .description(
      'revenue by discount id (MSP margins) and currency, net of refunds/credits/chargebacks, minor units as strings, as JSON',
    )
    .addOption(dataOption())
    .option('--from <date>', 'RFC 3339: transactions billed (adjustments made) at or after')
    .option('--to <date>', 'RFC 3339: before')
    .action(
      action(async (o: { data: string; from?: string; to?: string }) =>
        withBillingCore(o, (core) =>
          printJson(
            core.billing.revenueByDiscount({
              ...(o.from ? { from: o.from } : {}),
              ...(o.to ? { to: o.to } : {}),
            }),
          ),
        ),
      ),
    )

  addPaddleOptions(
    billing
      .command('reconcile')
      .description(
        "converge with Paddle: Paddle's events after the stored cursor (GET /events), then its lists; mirror what we lack, repair rows older than Paddle's object, link lost creates (core serve runs it every --reconcile-interval-ms)",
      )
      .option('--dry-run', 'report only: change nothing')
      .option(
        '--entity <name...>',
        "only these entities' lists (default: all, parents first; the event stream only without it)",
      )
      .option('--id <paddle-id>', 're-sync one object by its Paddle id')
      .addOption(dataOption())
      .addOption(jsonOption()),
  ).action(
    action(
      async (
        o: PaddleFlags & {
          data: string
          dryRun?: boolean
          entity?: string[]
          id?: string
          json?: boolean
        },
      ) =>
        withBillingCore(o, async (core) => {
          if (o.id) {
            const r = await core.billing.resync(o.id)
            if (o.json) return printJson(r)
            return void process.stdout.write(`${r.entity} ${r.paddle_id}: ${r.outcome}\n`)
          }
          for (const e of o.entity ?? [])
            if (!(ENTITY_NAMES as readonly string[]).includes(e))
              throw claError('CLA_ERR_INVALID_OPTION', `--entity ${e}: ${entityHelp}`)
          const r = await core.billing.reconcile({
            dryRun: Boolean(o.dryRun),
            ...(o.entity ? { entities: o.entity as EntityName[] } : {}),
          })
          if (o.json) return printJson(r)
          const ev = r.events
          if (ev)
            process.stdout.write(
              `${'events'.padEnd(13)} seen ${ev.seen}, inserted ${ev.inserted}, applied ${ev.applied}, linked ${ev.linked}, unchanged ${ev.unchanged}, duplicate ${ev.duplicate}, stored ${ev.stored}, parked ${ev.parked}; after ${ev.after ?? '(start)'}, cursor ${ev.cursor ?? '(none)'}${r.dry_run ? ' (not stored)' : ''}\n`,
            )
          for (const [name, c] of Object.entries(r.entities))
            process.stdout.write(
              `${name.padEnd(13)} seen ${c.seen}, inserted ${c.inserted}, applied ${c.applied}, linked ${c.linked}, unchanged ${c.unchanged}, parked ${c.parked}\n`,
            )
          for (const [entity, pid, what] of r.changes)
            process.stdout.write(
              `${r.dry_run ? 'would be ' : ''}${what.padEnd(8)} ${entity} ${pid}\n`,
            )
          for (const p of r.parked)
            process.stdout.write(`parked   ${p.entity} ${p.paddle_id}: ${p.message}\n`)
        }),
    ),
  )

  const events = billing
    .command('events')
    .description(
      "Paddle's webhook deliveries as stored: newest first; --failed: not applied (error or parked)",
    )
    .option('--failed', 'only events not applied')
    .option('--limit <n>', 'at most this many', '100')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; failed?: boolean; limit: string; json?: boolean }) =>
        withBillingCore(o, (core) => {
          const rows = listStoredEvents(core.billing, {
            failed: Boolean(o.failed),
            limit: whole('--limit', o.limit, 100),
          })
          if (o.json) return printJson(rows)
          if (rows.length === 0) return void process.stdout.write('no events\n')
          for (const r of rows)
            process.stdout.write(
              `${r.event_id}  ${r.event_type.padEnd(24)} ${r.occurred_at}  ${r.source.padEnd(7)}  ${r.outcome}\n`,
            )
        }),
      ),
    )
  events
    .command('replay')
    .description('apply a stored event that was not applied (error or parked) again, after a fix')
    .argument('<event-id>', "Paddle's event id (evt_…)")
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (id: string, o: { data: string; json?: boolean }) =>
        withBillingCore(o, (core) => {
          const r = replayEvent(core.billing, id)
          if (o.json) return printJson(r)
          process.stdout.write(`${r.event_id}  ${r.before} -> ${r.outcome}\n`)
        }),
      ),
    )

  billing
    .command('margins')
    .description(
      "bring existing subscriptions to their MSP's margin (set_discount from the next period); promotions are left alone",
    )
    .argument('[customer-id]', 'only under this customer (an MSP: its whole tree)')
    .option('--dry-run', 'only print what would change')
    .addOption(dataOption())
    .action(
      action(
        async (
          customerId: string | undefined,
          o: PaddleFlags & { data: string; dryRun?: boolean },
        ) =>
          withBillingCore(o, async (core) =>
            printJson(
              await core.billing.applyMargins({
                ...(customerId ? { customerId } : {}),
                dryRun: Boolean(o.dryRun),
                actor: 'cli',
              }),
            ),
          ),
      ),
    )

  registerPlans(billing)
  registerSubscriptionActions(billing)

  const paddle = program.command('paddle').description('Paddle tools')
  paddle
    .command('fake')
    .description(
      'run the fake Paddle API on loopback (Paddle shapes, ids, errors, pagination, signed webhooks)',
    )
    .requiredOption('--listen <host:port>', 'address to listen on, e.g. 127.0.0.1:8090')
    .addOption(
      new Option('--webhook-url <url>', 'POST signed webhooks here').env(
        'CLAVITOR_FAKE_PADDLE_WEBHOOK_URL',
      ),
    )
    .addOption(
      new Option('--secret <secret>', 'webhook signing secret')
        .env('CLAVITOR_FAKE_PADDLE_SECRET')
        .default('fake_paddle_secret'),
    )
    .addOption(
      new Option('--api-key <key>', 'accept only this API key (default: any Bearer token)').env(
        'CLAVITOR_FAKE_PADDLE_API_KEY',
      ),
    )
    .action(
      action(
        async (o: { listen: string; webhookUrl?: string; secret: string; apiKey?: string }) => {
          const { host, port } = parseListen(o.listen)
          const fake = await startFakePaddle({
            host,
            port,
            secret: o.secret,
            ...(o.webhookUrl ? { webhookUrl: o.webhookUrl } : {}),
            ...(o.apiKey ? { apiKey: o.apiKey } : {}),
          })
          process.stdout.write(`fake paddle listening on ${fake.url}\n`)
          onShutdown(async (sig) => {
            process.stderr.write(`fake paddle: ${sig}, closing\n`)
            await fake.close()
          })
        },
      ),
    )
}

/** A limit flag: a whole number, or "none" for no limit. */
function limitOption(name: string, v: string | undefined): number | null | undefined {
  if (v === undefined) return undefined
  if (v === 'none') return null
  if (!/^\d+$/.test(v))
    throw claError('CLA_ERR_INVALID_OPTION', `${name} must be a whole number or "none", got "${v}"`)
  return Number(v)
}

interface PlanFlags {
  data: string
  name?: string
  price?: string[]
  maxVaults?: string
  maxDevicesPerVault?: string
  description?: string
  json?: boolean
}

function planInput(o: PlanFlags): Record<string, unknown> {
  const input: Record<string, unknown> = {}
  if (o.name !== undefined) input.name = o.name
  if (o.price !== undefined) input.price_ids = o.price
  const vaults = limitOption('--max-vaults', o.maxVaults)
  if (vaults !== undefined) input.max_vaults = vaults
  const devices = limitOption('--max-devices-per-vault', o.maxDevicesPerVault)
  if (devices !== undefined) input.max_devices_per_vault = devices
  if (o.description !== undefined) input.description = o.description
  return input
}

function printPlan(p: Plan): void {
  const lim = (n: number | null) => (n === null ? 'none' : String(n))
  process.stdout.write(
    `${p.id}  ${p.status.padEnd(8)} ${p.name}  vaults/unit=${lim(p.max_vaults)} devices/vault=${lim(p.max_devices_per_vault)}  prices=${p.price_ids.join(',')}\n`,
  )
}

/** `clavitor billing plan create|update|archive|list|show` and `billing entitlements`. */
function registerPlans(billing: Command): void {
  const plan = billing
    .command('plan')
    .description('plans (tiers): the prices that sell them and their limits; ours, never at Paddle')
  const limitFlags = (c: Command) =>
    c
      .option('--max-vaults <n|none>', 'vaults one unit (quantity 1) pays for')
      .option('--max-devices-per-vault <n|none>', 'device P0s each vault may enrol')
      .option('--description <text>', 'a note for admins')
      .addOption(dataOption())
      .addOption(jsonOption())

  limitFlags(
    plan
      .command('create')
      .description('create a plan; prints it')
      .requiredOption('--name <name>', 'the plan name, e.g. "Team"')
      .requiredOption('--price <id...>', "recurring price id(s) that sell it (ours or Paddle's)"),
  ).action(
    action(async (o: PlanFlags) => {
      const input = planInput(o)
      for (const [flag, key] of [
        ['--max-vaults', 'max_vaults'],
        ['--max-devices-per-vault', 'max_devices_per_vault'],
      ] as const) {
        if (!(key in input))
          throw claError('CLA_ERR_INVALID_OPTION', `${flag} is required (a number, or "none")`)
      }
      const p = await withCore(o.data, (core) => core.billing.createPlan(input, { actor: 'cli' }))
      if (o.json) return printJson(p)
      printPlan(p)
    }),
  )

  limitFlags(
    plan
      .command('update')
      .description('change a plan; a lower limit keeps what exists and refuses new vaults/devices')
      .argument('<plan-id>', 'pln_…')
      .option('--name <name>', 'new name')
      .option('--price <id...>', 'the whole new list of prices'),
  ).action(
    action(async (id: string, o: PlanFlags) => {
      const p = await withCore(o.data, (core) =>
        core.billing.updatePlan(id, planInput(o), { actor: 'cli' }),
      )
      if (o.json) return printJson(p)
      printPlan(p)
    }),
  )

  plan
    .command('archive')
    .description('stop selling a plan; subscriptions on it keep their limits')
    .argument('<plan-id>', 'pln_…')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (id: string, o: { data: string; json?: boolean }) => {
        const p = await withCore(o.data, (core) =>
          core.billing.updatePlan(id, { status: 'archived' }, { actor: 'cli' }),
        )
        if (o.json) return printJson(p)
        printPlan(p)
      }),
    )

  plan
    .command('list')
    .description('plans by name')
    .option('--archived', 'include archived plans')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; archived?: boolean; json?: boolean }) => {
        const rows = await withCore(o.data, (core) =>
          core.billing.listPlans({ archived: Boolean(o.archived) }),
        )
        if (o.json) return printJson(rows)
        if (rows.length === 0) return void process.stdout.write('no plans\n')
        for (const p of rows) printPlan(p)
      }),
    )

  billing
    .command('entitlements')
    .description("a subscription's limits from its items' plans, as JSON")
    .argument('<subscription-id>', 'our id (sbs_…)')
    .addOption(dataOption())
    .action(
      action(async (id: string, o: { data: string }) => {
        const e = await withCore(o.data, (core) => core.billing.entitlements(id))
        if (!e) throw claError('CLA_ERR_NOT_FOUND', `subscription ${id} does not exist`)
        printJson(e)
      }),
    )
}

/** `--item PRICE:QTY` → {price_id, quantity}. */
function parseItem(v: string): { price_id: string; quantity: number } {
  const m = /^([^:\s]+):(\d+)$/.exec(v)
  if (!m) throw claError('CLA_ERR_INVALID_OPTION', `--item must be PRICE_ID:QUANTITY, got "${v}"`)
  return { price_id: m[1]!, quantity: Number(m[2]) }
}

/**
 * `clavitor billing subscription cancel|pause|resume|change|discount|discard SUB`: the
 * subscription's life, led by us (written here first, then at Paddle).
 */
function registerSubscriptionActions(billing: Command): void {
  const sub = billing
    .command('subscription')
    .description(
      "a subscription's life, led by us: written here first, then at Paddle (see docs/billing.md)",
    )
  const run = (
    o: PaddleFlags & { data: string; json?: boolean },
    fn: (core: Core) => Promise<Record<string, unknown>>,
  ) =>
    withBillingCore(o, async (core) => {
      const row = await fn(core)
      if (o.json) return printJson(row)
      process.stdout.write(
        `${String(row.id)}  ${String(row.status)}  ${String(row.state)}${row.scheduled_change ? `  scheduled ${JSON.stringify(row.scheduled_change)}` : ''}${row.last_error ? `  ${String(row.last_error)}` : ''}\n`,
      )
    })
  const when = (c: Command) =>
    c.option('--immediately', 'now, instead of at the end of the billing period')
  type Flags = PaddleFlags & { data: string; json?: boolean; actor?: string }
  const common = (c: Command) =>
    addPaddleOptions(
      c
        .argument('<subscription-id>', 'our id (sbs_…)')
        .addOption(dataOption())
        .addOption(jsonOption()),
    )

  common(
    when(sub.command('cancel').description('cancel at the period end (or --immediately)')),
  ).action(
    action(async (id: string, o: Flags & { immediately?: boolean }) =>
      run(o, (core) =>
        core.billing.changeSubscription(
          id,
          {
            action: 'cancel',
            effective_from: o.immediately ? 'immediately' : 'next_billing_period',
          },
          { actor: 'cli' },
        ),
      ),
    ),
  )
  common(
    when(
      sub
        .command('pause')
        .description('pause at the period end (or --immediately)')
        .option('--resume-at <rfc3339>', 'resume on this date (else until resumed)'),
    ),
  ).action(
    action(async (id: string, o: Flags & { immediately?: boolean; resumeAt?: string }) =>
      run(o, (core) =>
        core.billing.changeSubscription(
          id,
          {
            action: 'pause',
            effective_from: o.immediately ? 'immediately' : 'next_billing_period',
            ...(o.resumeAt ? { resume_at: o.resumeAt } : {}),
          },
          { actor: 'cli' },
        ),
      ),
    ),
  )
  common(
    sub
      .command('resume')
      .description('resume a paused subscription now, or drop a scheduled pause or cancel'),
  ).action(
    action(async (id: string, o: Flags) =>
      run(o, (core) => core.billing.changeSubscription(id, { action: 'resume' }, { actor: 'cli' })),
    ),
  )
  common(
    sub
      .command('change')
      .description('replace the items (the whole list) with a proration mode')
      .requiredOption('--item <price:qty...>', 'PRICE_ID:QUANTITY, once per item')
      .addOption(
        new Option('--proration <mode>', 'how Paddle bills the change')
          .choices([...PRORATION_MODES])
          .makeOptionMandatory(),
      ),
  ).action(
    action(async (id: string, o: Flags & { item: string[]; proration: string }) =>
      run(o, (core) =>
        core.billing.changeSubscription(
          id,
          {
            action: 'change_items',
            items: o.item.map(parseItem),
            proration_billing_mode: o.proration,
          },
          { actor: 'cli' },
        ),
      ),
    ),
  )
  common(
    when(
      sub
        .command('discount')
        .description('set (--set DISCOUNT_ID) or remove (--remove) the discount')
        .option('--set <discount-id>', 'our discount id (dsc_…)')
        .option('--remove', 'no discount'),
    ),
  ).action(
    action(
      async (id: string, o: Flags & { set?: string; remove?: boolean; immediately?: boolean }) => {
        if (Boolean(o.set) === Boolean(o.remove))
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            'give exactly one of --set DISCOUNT_ID or --remove',
          )
        return run(o, (core) =>
          core.billing.changeSubscription(
            id,
            {
              action: 'set_discount',
              discount_id: o.set ?? null,
              effective_from: o.immediately ? 'immediately' : 'next_billing_period',
            },
            { actor: 'cli' },
          ),
        )
      },
    ),
  )
  common(
    sub
      .command('discard')
      .description("give up a waiting action (e.g. one Paddle refused): take Paddle's state again"),
  ).action(
    action(async (id: string, o: Flags) =>
      run(o, (core) => core.billing.discardSubscriptionChange(id, { actor: 'cli' })),
    ),
  )
}
