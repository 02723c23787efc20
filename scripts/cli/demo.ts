// `clavitor demo` (what `npm start` runs): the fake Paddle, the core, two POPs and an rsync
// daemon on this machine, every step checked; see scripts/demo/demo.ts and docs/cli.md.
import { existsSync, mkdtempSync, readdirSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { Option, type Command } from 'commander'
import { claError } from '../../lib/errors.js'
import { DemoFailed, formatReport, removeCommand, runDemo } from '../demo/demo.js'
import { action, printJson } from './common.js'

interface DemoFlags {
  data?: string
  exitAfterReport?: boolean
  json?: boolean
  credentials: string
  syncEvery: string
}

function truthy(v: string | undefined): boolean {
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false'
}

export function register(program: Command): void {
  program
    .command('demo')
    .description(
      'the whole system on this machine: fake Paddle, core, POP API, rsync daemon, two POPs; ' +
        'creates an MSP, customer, department, subscription, vault; registers credentials, syncs, ' +
        'checks lookups on both POPs, prints a report and the admin setup link; runs until Ctrl-C',
    )
    .addOption(
      new Option(
        '--data <dir>',
        'data folder for everything (must be empty or missing); default: a new folder under the temp dir',
      ),
    )
    .addOption(
      new Option(
        '--exit-after-report',
        'exit after the report: 0 if every check passed, 1 otherwise (also CLAVITOR_DEMO_EXIT=1)',
      ),
    )
    .addOption(
      new Option('--json', 'print the report as JSON on stdout (progress goes to stderr)').env(
        'CLAVITOR_JSON',
      ),
    )
    .addOption(
      new Option('--credentials <n>', 'P0s to register, 1..100')
        .default('5')
        .env('CLAVITOR_DEMO_CREDENTIALS'),
    )
    .addOption(
      new Option('--sync-every <s>', 'seconds between POP pulls while the demo runs, 1..3600')
        .default('15')
        .env('CLAVITOR_DEMO_SYNC_EVERY'),
    )
    .action(
      action(async (o: DemoFlags) => {
        const every = Number(o.syncEvery)
        if (!/^\d+$/.test(o.syncEvery) || every < 1 || every > 3600)
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `--sync-every must be 1..3600; got ${o.syncEvery}`,
          )
        const n = Number(o.credentials)
        if (!/^\d+$/.test(o.credentials) || n < 1 || n > 100)
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `--credentials must be 1..100; got ${o.credentials}`,
          )
        let dir: string
        if (o.data) {
          dir = resolve(o.data)
          if (existsSync(dir) && readdirSync(dir).length > 0)
            throw claError(
              'CLA_ERR_INVALID_OPTION',
              `--data ${dir} is not empty; give a new or empty folder (the demo makes a fresh CA and stores)`,
            )
        } else dir = mkdtempSync(join(tmpdir(), 'clavitor-demo-'))
        const exitAfter = Boolean(o.exitAfterReport) || truthy(process.env.CLAVITOR_DEMO_EXIT)
        const out = o.json ? process.stderr : process.stdout
        const write = (line: string) => void out.write(line + '\n')
        write(`clavitor demo: data folder ${dir}`)

        // a signal during the steps: the step in flight finishes, no other starts, all closes
        const ac = new AbortController()
        const early = () => {
          if (!ac.signal.aborted) write('stopping after the current step…')
          ac.abort()
        }
        process.on('SIGINT', early)
        process.on('SIGTERM', early)

        let handle
        try {
          handle = await runDemo({
            dataDir: dir,
            write,
            credentials: n,
            syncEveryMs: every * 1000,
            signal: ac.signal,
          })
        } catch (err) {
          if (!(err instanceof DemoFailed)) throw err
          if (ac.signal.aborted) {
            write(`\nInterrupted. The data folder stays; remove it with:\n  ${removeCommand(dir)}`)
            process.exit(130)
          }
          if (o.json) printJson({ ok: false, data_dir: dir, error: err.message, steps: err.steps })
          process.stderr.write(
            `clavitor: demo failed: ${err.message}\n` +
              `the data folder stays for inspection (logs: ${join(dir, 'demo.log')}); remove it with: ${removeCommand(dir)}\n`,
          )
          process.exit(1)
        }
        process.off('SIGINT', early)
        process.off('SIGTERM', early)
        const r = handle.report
        if (o.json) printJson(r)
        else write(formatReport(r))

        const bye = (code: number) => {
          write(
            `\nStopped. The data folder stays for inspection; remove it with:\n  ${r.remove_command}`,
          )
          process.exit(code)
        }
        if (exitAfter || ac.signal.aborted) {
          await handle.close()
          return bye(r.ok ? 0 : 1)
        }
        write(`\nRunning; the POPs pull every ${every} s. Ctrl-C stops everything.`)
        let stopping = false
        const stop = () => {
          if (stopping) return
          stopping = true
          void handle.close().then(
            () => bye(r.ok ? 0 : 1),
            (err: unknown) => {
              process.stderr.write(`clavitor: close failed: ${String(err)}\n`)
              process.exit(1)
            },
          )
        }
        process.on('SIGINT', stop)
        process.on('SIGTERM', stop)
      }),
    )
}
