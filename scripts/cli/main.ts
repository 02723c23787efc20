// Entry of the `clavitor` CLI (scripts/clavitor runs this through tsx).
// Each area registers its own subcommands from its own file; keep this file a list.
import { Command } from 'commander'
import type { Register } from './common.js'

const modules: Array<Promise<{ register: Register }>> = [
  // one line per area, e.g. import('./store.js'),
  import('./audit.js'),
  import('./store.js'),
  import('./ca.js'),
  import('./pop.js'),
  import('./vault.js'),
  import('./billing.js'),
  import('./core.js'),
  import('./admin.js'),
  import('./doctor.js'),
  import('./demo.js'),
  import('./backup.js'),
  import('./replica.js'),
  // `core pop …` joins the `core` command if another module made it: keep this line last.
  import('./pop-admin.js'),
]

const program = new Command()
program
  .name('clavitor')
  .description('Clavitor storage core: WORM store, metadata, Paddle dual-write, POP replication')
  .showHelpAfterError('(add --help for usage)')
  .configureOutput({ outputError: (str, write) => write(str) })
  .exitOverride((err) => {
    // commander's own usage errors are bad input: exit 2, like ours.
    process.exit(
      err.exitCode === 0
        ? 0
        : err.code === 'commander.helpDisplayed' || err.code === 'commander.version'
          ? 0
          : 2,
    )
  })

for (const m of await Promise.all(modules)) m.register(program)

await program.parseAsync(process.argv)
