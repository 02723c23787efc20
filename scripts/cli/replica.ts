// `clavitor core replica init|status|run` (meta.db streamed by Litestream) and
// `clavitor core restore` (a core rebuilt from the replica and a POP's store): disaster
// recovery, lib/db/replica.ts and lib/restore.ts; docs/operations.md.
import { spawn } from 'node:child_process'
import { Option, type Command } from 'commander'
import { claError } from '../../lib/errors.js'
import {
  initReplica,
  litestreamBinary,
  replicaConfigPath,
  replicaStatus,
} from '../../lib/db/replica.js'
import { restoreCore } from '../../lib/restore.js'
import { action, dataOption, jsonOption, printJson, subcommand } from './common.js'

export function register(program: Command): void {
  const core = subcommand(program, 'core', 'core administration')
  const replica = core
    .command('replica')
    .description('meta.db streamed to a replica by Litestream (RPO about the sync interval)')

  replica
    .command('init')
    .description('write {data}/litestream.yml: where meta.db is streamed')
    .addOption(dataOption())
    .requiredOption(
      '--replica <path|url>',
      'an absolute path (local or mounted) or s3://, sftp://, gs://, abs:// URL',
    )
    .option('--sync-interval-ms <ms>', 'how often the WAL is shipped (the RPO)', '1000')
    .action(
      action(async (o: { data: string; replica: string; syncIntervalMs: string }) => {
        if (!/^\d+$/.test(o.syncIntervalMs))
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `--sync-interval-ms must be a whole number, got "${o.syncIntervalMs}"`,
          )
        const file = initReplica(o.data, {
          replica: o.replica,
          syncIntervalMs: Number(o.syncIntervalMs),
        })
        process.stdout.write(
          `${file}\nstart it: systemctl enable --now clavitor-litestream (or clavitor core replica run)\n`,
        )
      }),
    )

  replica
    .command('status')
    .description('how far the replica is behind meta.db')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; json?: boolean }) => {
        const s = await replicaStatus(o.data)
        if (o.json) return printJson(s)
        if (!s.configured)
          return void process.stdout.write('not configured (clavitor core replica init)\n')
        process.stdout.write(
          `${s.url}  generation ${s.generation ?? '-'}  last replicated ${s.last_replicated_at ? new Date(s.last_replicated_at / 1000).toISOString() : 'never'}  lag ${s.lag_ms ?? '-'} ms\n`,
        )
      }),
    )

  replica
    .command('run')
    .description(
      'run Litestream in the foreground (what clavitor-litestream.service does); SIGTERM stops it',
    )
    .addOption(dataOption())
    .action(
      action(async (o: { data: string }) => {
        const child = spawn(
          litestreamBinary(),
          ['replicate', '-config', replicaConfigPath(o.data)],
          {
            stdio: 'inherit',
          },
        )
        for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => child.kill(sig))
        const code = await new Promise<number>((resolve) =>
          child.once('exit', (c) => resolve(c ?? 1)),
        )
        process.exitCode = code
      }),
    )

  core
    .command('restore')
    .description(
      'rebuild a lost core: meta.db from its replica, the store from any POP, the keys from their backup; then index, forget what is gone, verify (docs/operations.md)',
    )
    .addOption(dataOption())
    .requiredOption('--replica <path|url>', 'the meta.db replica (as given to replica init)')
    .requiredOption(
      '--store-from <dir|rsync-source>',
      "a POP's store folder ({pop data}/store) or an rsync source",
    )
    .option('--keys-from <dir>', 'the offline backup of the old {data}/keys')
    .option('--timestamp <rfc3339>', 'meta.db as of this time instead of the newest')
    .addOption(
      new Option('--protection <mode>', 'sealing').choices(['enforce', 'best-effort', 'off']),
    )
    .addOption(jsonOption())
    .action(
      action(
        async (o: {
          data: string
          replica: string
          storeFrom: string
          keysFrom?: string
          timestamp?: string
          protection?: 'enforce' | 'best-effort' | 'off'
          json?: boolean
        }) => {
          const r = await restoreCore({
            dataDir: o.data,
            replica: o.replica,
            storeFrom: o.storeFrom,
            ...(o.keysFrom ? { keysFrom: o.keysFrom } : {}),
            ...(o.timestamp ? { timestamp: o.timestamp } : {}),
            ...(o.protection ? { protection: o.protection } : {}),
          })
          if (o.json) return printJson(r)
          process.stdout.write(
            [
              `restored ${o.data} in ${r.ms.total} ms (meta.db ${r.ms.meta} ms, store ${r.ms.store} ms, verify ${r.ms.verify} ms)`,
              `files ${r.files}, indexed unpublished ${r.indexed_unpublished}, corrupt ${r.corrupt}`,
              `forgotten ${r.forgotten.blobs} blob(s), ${r.forgotten.registrations} registration(s)`,
              r.generation.after !== r.generation.before
                ? `generation ${r.generation.before} -> ${r.generation.after}: the core went back in time; POPs re-baseline`
                : `generation ${r.generation.after}: nothing lost; POPs continue`,
            ].join('\n') + '\n',
          )
          if (r.corrupt > 0) process.exitCode = 1
        },
      ),
    )
}
