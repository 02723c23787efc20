// `clavitor core backup`: an online, consistent copy of meta.db (SQLite backup API).
import type { Command } from 'commander'
import { backupDb } from '../../lib/db/backup.js'
import { openDb } from '../../lib/db/open.js'
import { dataLayout } from '../../lib/db/data-dir.js'
import { action, dataOption, printJson, subcommand } from './common.js'

export function register(program: Command): void {
  subcommand(program, 'core', 'core administration')
    .command('backup')
    .description(
      "copy {data}/meta.db consistently while the core runs (SQLite online backup); the store's .cla files and {data}/keys are backed up separately (docs/operations.md)",
    )
    .addOption(dataOption())
    .requiredOption('--out <file>', 'destination file (must not exist)')
    .action(
      action(async (o: { data: string; out: string }) => {
        const db = openDb(dataLayout(o.data).db, { readonly: true })
        try {
          const r = await backupDb(db, o.out)
          printJson({ out: o.out, pages: r.pages })
        } finally {
          db.close()
        }
      }),
    )
}
