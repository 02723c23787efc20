// clavitor doctor: checks this host (rsync, chattr on the store's filesystem, disk space,
// certificate expiry, clock skew against the core). Exit 0 when nothing failed.
import { Option, type Command } from 'commander'
import { runDoctor } from '../../lib/doctor.js'
import { action, dataOption, printJson } from './common.js'

export function register(program: Command): void {
  program
    .command('doctor')
    .description(
      'check this host: rsync, chattr support, disk space, certificates, clock skew, the meta.db replica',
    )
    .addOption(dataOption())
    .addOption(
      new Option('--core <url>', "the core's URL, to measure clock skew (POPs)").env(
        'CLAVITOR_CORE_URL',
      ),
    )
    .addOption(
      new Option('--min-free <gib>', 'warn below this much free space, GiB')
        .default('1')
        .argParser(Number),
    )
    .addOption(
      new Option('--cert-warn-days <days>', 'warn when a certificate expires sooner')
        .default('30')
        .argParser(Number),
    )
    .addOption(
      new Option(
        '--max-replica-lag <s>',
        "fail when meta.db's Litestream replica is further behind (cores with core replica init)",
      )
        .default('60')
        .argParser(Number),
    )
    .addOption(
      new Option('--json', 'print JSON: {ok, checks: [{name, verdict, detail}]}').env(
        'CLAVITOR_JSON',
      ),
    )
    .action(
      action(
        async (o: {
          data: string
          core?: string
          minFree: number
          certWarnDays: number
          maxReplicaLag: number
          json?: boolean
        }) => {
          const report = await runDoctor({
            dataDir: o.data,
            ...(o.core ? { coreUrl: o.core } : {}),
            minFreeBytes: o.minFree * 1024 ** 3,
            certWarnDays: o.certWarnDays,
            maxReplicaLagSeconds: o.maxReplicaLag,
          })
          if (o.json) printJson(report)
          else {
            for (const c of report.checks)
              process.stdout.write(`${c.verdict.padEnd(4)}  ${c.name}: ${c.detail}\n`)
            process.stdout.write(
              report.ok ? 'doctor: all checks passed\n' : 'doctor: some checks failed\n',
            )
          }
          process.exitCode = report.ok ? 0 : 1
        },
      ),
    )
}
