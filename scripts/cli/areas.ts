// Which file serves which top-level command of the `clavitor` CLI, so that a run imports
// just the area it uses: the whole engine (Fastify, WebAuthn, SQLite…) takes ~0.6 s to
// import, which `clavitor --help` or `clavitor store verify` should not pay for
// `core serve`'s sake. test/scripts/cli-areas.test.ts checks this table against what the
// modules register.
import { Command } from 'commander'
import type { Register } from './common.js'

type Load = () => Promise<{ register: Register }>
const audit: Load = () => import('./audit.js')
const store: Load = () => import('./store.js')
const ca: Load = () => import('./ca.js')
const pop: Load = () => import('./pop.js')
const vault: Load = () => import('./vault.js')
const billing: Load = () => import('./billing.js')
const core: Load = () => import('./core.js')
const admin: Load = () => import('./admin.js')
const doctor: Load = () => import('./doctor.js')
const demo: Load = () => import('./demo.js')
const backup: Load = () => import('./backup.js')
const replica: Load = () => import('./replica.js')
// `core pop …` joins the `core` command another module made: keep it last in its list.
const popAdmin: Load = () => import('./pop-admin.js')

/** Top-level command -> its one-line description and the modules that add to it, in order. */
export const AREAS: Record<string, { description: string; modules: Load[] }> = {
  audit: { description: 'the tamper-evident audit log (events table)', modules: [audit] },
  store: {
    description:
      'the WORM .cla blob store ({data}/store, index in {data}/meta.db, keys in {data}/keys)',
    modules: [store],
  },
  ca: { description: 'the private CA for POP mTLS certificates (wraps openssl)', modules: [ca] },
  pop: { description: 'POP-side commands', modules: [ca, pop] },
  core: { description: 'core administration', modules: [pop, core, backup, replica, popAdmin] },
  vault: {
    description: 'vaults and their API keys (the credentials API authenticates with a vault key)',
    modules: [vault],
  },
  billing: {
    description: 'billing rows written here first, then at Paddle (dual write)',
    modules: [billing],
  },
  paddle: { description: 'Paddle tools', modules: [billing] },
  admin: { description: 'admins of the web UI (WebAuthn security keys)', modules: [admin] },
  doctor: {
    description:
      'check this host: rsync, chattr support, disk space, certificates, clock skew, the meta.db replica',
    modules: [doctor],
  },
  demo: {
    description:
      'the whole system on this machine: fake Paddle, core, POP API, rsync daemon, two POPs; creates an MSP, customer, department, subscription, vault; registers credentials, syncs, checks lookups on both POPs, prints a report and the admin setup link; runs until Ctrl-C',
    modules: [demo],
  },
}

/** The program for `argv` (process.argv): the named area's real commands, else one line per area. */
export async function buildProgram(argv: string[]): Promise<Command> {
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
  // The root takes no options of its own, so the first word that is not one names the area
  // (`clavitor help store` too).
  const words = argv.slice(2).filter((a) => !a.startsWith('-'))
  const name = words[0] === 'help' ? words[1] : words[0]
  const area = name !== undefined && Object.hasOwn(AREAS, name) ? AREAS[name] : undefined
  if (area) {
    for (const load of area.modules) (await load()).register(program)
  } else {
    // An overview or an unknown command: names and descriptions are enough.
    for (const [n, a] of Object.entries(AREAS)) program.command(n).description(a.description)
  }
  return program
}
