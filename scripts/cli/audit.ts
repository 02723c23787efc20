// `clavitor audit verify|list`: the hash-chained audit log (lib/audit).
import { InvalidArgumentError, Option, type Command } from 'commander'
import { openCore } from '../../lib/core.js'
import { claError } from '../../lib/errors.js'
import { listEvents, verifyChain } from '../../lib/audit/log.js'
import { writeAnchor } from '../../lib/audit/anchor.js'
import { loadAnchors } from '../../lib/audit/anchor.js'
import { action, dataOption, printJson } from './common.js'

export function register(program: Command): void {
  const audit = program.command('audit').description('the tamper-evident audit log (events table)')

  audit
    .command('verify')
    .description(
      'walk the hash chain (and the anchors in the WORM store); exit 0 if intact, 1 naming the first broken row',
    )
    .addOption(dataOption())
    .addOption(new Option('--json', 'print the result as JSON').env('CLAVITOR_JSON'))
    .addOption(
      new Option('--no-anchors', 'check the table only, not the anchors kept in the store'),
    )
    .action(
      action(async (opts: { data: string; json?: boolean; anchors: boolean }) => {
        const core = await openCore({ dataDir: opts.data })
        try {
          const anchors = opts.anchors ? loadAnchors(opts.data, core.store) : []
          const r = verifyChain(core.db, { anchors })
          if (opts.json) printJson({ ...r, anchors: anchors.length })
          if (r.ok) {
            if (!opts.json) {
              process.stdout.write(
                `audit chain intact: ${r.count} events` +
                  (r.head ? `, head #${r.head.id} ${r.head.hash}` : '') +
                  `, ${anchors.length} anchors checked\n`,
              )
            }
            return
          }
          throw claError(
            'CLA_ERR_AUDIT_CHAIN_BROKEN',
            `audit chain broken at event #${r.firstBrokenId}: ${r.reason}`,
            {
              details: { firstBrokenId: r.firstBrokenId, reason: r.reason },
            },
          )
        } finally {
          await core.close()
        }
      }),
    )

  audit
    .command('anchor')
    .description(
      'write the chain head to the WORM store as a sealed anchor (run from cron, e.g. every 10 minutes)',
    )
    .addOption(dataOption())
    .action(
      action(async (opts: { data: string }) => {
        const core = await openCore({ dataDir: opts.data })
        try {
          const blob = await writeAnchor(core.db, core.store)
          process.stdout.write(
            blob ? `anchor written: ${blob.path}\n` : 'no new events since the last anchor\n',
          )
        } finally {
          await core.close()
        }
      }),
    )

  audit
    .command('list')
    .description('print audit events, newest first')
    .addOption(dataOption())
    .option('--kind <kind>', 'only this kind (e.g. pop.request)')
    .option('--actor <actor>', 'only this actor (POP id, human id, system, unknown)')
    .option('--outcome <outcome>', 'only this outcome (allowed, refused, ok, error, alarm)')
    .addOption(
      new Option('--limit <n>', 'at most this many rows (max 1000)')
        .default('50')
        .argParser(positiveInt),
    )
    .addOption(new Option('--json', 'print JSON rows').env('CLAVITOR_JSON'))
    .action(
      action(
        async (opts: {
          data: string
          kind?: string
          actor?: string
          outcome?: string
          limit: string | number
          json?: boolean
        }) => {
          const core = await openCore({ dataDir: opts.data })
          try {
            const rows = listEvents(core.db, {
              kind: opts.kind,
              actor: opts.actor,
              outcome: opts.outcome,
              limit: Number(opts.limit),
            })
            if (opts.json) return printJson(rows)
            for (const r of rows) {
              process.stdout.write(
                `#${r.id} ${new Date(Math.floor(r.at / 1000)).toISOString()} ${r.kind} ${r.actor} ${r.outcome}` +
                  (r.reason ? ` ${r.reason}` : '') +
                  (r.ip ? ` ip=${r.ip}` : '') +
                  (r.route ? ` ${r.route}` : '') +
                  '\n',
              )
            }
          } finally {
            await core.close()
          }
        },
      ),
    )
}

function positiveInt(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1)
    throw new InvalidArgumentError('must be a positive integer')
  return n
}
