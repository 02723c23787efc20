// `clavitor audit verify|list`: the hash-chained audit log (lib/audit).
import { Option, type Command } from 'commander'
import { claError } from '../../lib/errors.js'
import { listEvents } from '../../lib/audit/log.js'
import { writeAnchor } from '../../lib/audit/anchor.js'
import { verifyAuditTrail, type AuditTrailReport } from '../../lib/audit/verify-trail.js'
import { action, dataOption, openCore, printJson } from './common.js'

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
          const r = verifyAuditTrail(core.db, opts.data, core.store, { anchors: opts.anchors })
          if (opts.json) printJson(r)
          else warnAboutAnchors(r)
          if (r.ok) {
            if (!opts.json) {
              process.stdout.write(
                `audit chain intact: ${r.count} events` +
                  (r.head ? `, head #${r.head.id} ${r.head.hash}` : '') +
                  (r.coreAnchors !== undefined
                    ? `, a POP: ${r.coreAnchors} anchors of the core's log held, not checked against this one`
                    : `, ${r.anchors} anchors checked`) +
                  (r.legacy.count ? `, ${r.legacy.count} legacy anchors not trusted` : '') +
                  (r.skipped.length ? `, ${r.skipped.length} foreign files skipped` : '') +
                  '\n',
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
          const blob = await writeAnchor(core.db, core.store, {
            onAlarm: (files) => files.forEach((f) => warn(foreignLine(f))),
          })
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
      // checked by listEvents itself (CLA_ERR_INVALID_INPUT), like every other caller
      new Option('--limit <n>', 'at most this many rows (max 1000)').default('50'),
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

const warn = (m: string) => process.stderr.write(`clavitor: warning: ${m}\n`)
const foreignLine = (f: { file: string; why: string }) =>
  `skipped ${f.file}: no anchor of ours (${f.why}); alarmed as audit.alarm anchor_foreign`

/** The anchor findings that are not a broken chain: warnings on stderr. */
function warnAboutAnchors(r: AuditTrailReport): void {
  for (const f of r.skipped) warn(foreignLine(f))
  for (const d of r.legacy.disagree) {
    warn(
      `legacy (v1) anchor ${d.file} ${d.reason}; v1 anchors are not trusted (a vault could have forged one), look at events up to #${d.id}`,
    )
  }
}
