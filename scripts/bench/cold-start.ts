// Cold start of the CLI and of `core serve`, before (TypeScript through tsx's loader, as
// every process ran until issue 16) and after (the compiled dist/ with plain node), against
// `node -e 0` and `node` importing commander alone, in the same run. Median and min of N
// runs each. `core serve` is timed from spawn until GET /healthz answers 200.
// Run: npm run bench:cold-start [-- --runs N]
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const root = new URL('../..', import.meta.url).pathname
const runs = Number(process.argv[process.argv.indexOf('--runs') + 1]) || 15
const tsx = [
  '--import',
  `file://${root}node_modules/tsx/dist/loader.mjs`,
  join(root, 'scripts/cli/main.ts'),
]
const dist = [join(root, 'dist/scripts/cli/main.js')]

function timeOnce(args: string[]): number {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(process.execPath, args, { stdio: 'ignore', cwd: root })
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}`)
  return Number(process.hrtime.bigint() - t0) / 1e6
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port
      s.close(() => resolve(p))
    })
  })
}

async function serveOnce(cli: string[]): Promise<number> {
  const data = mkdtempSync(join(tmpdir(), 'clavitor-cold-'))
  const port = await freePort()
  const t0 = process.hrtime.bigint()
  const child = spawn(
    process.execPath,
    [...cli, 'core', 'serve', '--data', data, '--listen', `127.0.0.1:${port}`],
    {
      stdio: 'ignore',
      env: { ...process.env, CLAVITOR_PROTECTION: 'off', CLAVITOR_BILLING_RECONCILE_MS: '0' },
    },
  )
  try {
    for (;;) {
      try {
        const r = await fetch(`http://127.0.0.1:${port}/healthz`)
        if (r.status === 200) return Number(process.hrtime.bigint() - t0) / 1e6
      } catch {
        // not listening yet
      }
      if (child.exitCode !== null) throw new Error(`core serve exited ${child.exitCode}`)
      await new Promise((r) => setTimeout(r, 5))
    }
  } finally {
    child.kill('SIGTERM')
    await new Promise((r) => child.once('exit', r))
    rmSync(data, { recursive: true, force: true })
  }
}

const stats = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]! }
}

async function main(): Promise<void> {
  const rows: Array<[string, number[]]> = []
  const add = async (name: string, f: () => number | Promise<number>) => {
    const xs: number[] = []
    for (let i = 0; i < runs; i++) xs.push(await f())
    rows.push([name, xs])
  }
  await add('baseline: node -e 0', () => timeOnce(['-e', '0']))
  await add('baseline: node importing commander', () =>
    timeOnce(['--input-type=module', '-e', "await import('commander')"]),
  )
  await add('clavitor --help, before (tsx loader)', () => timeOnce([...tsx, '--help']))
  await add('clavitor --help, after (dist, plain node)', () => timeOnce([...dist, '--help']))
  await add('clavitor store --help, after', () => timeOnce([...dist, 'store', '--help']))
  await add('core serve until /healthz 200, before (tsx loader)', () => serveOnce(tsx))
  await add('core serve until /healthz 200, after (dist)', () => serveOnce(dist))
  console.log(`| what | median ms | min ms | runs |`)
  console.log(`| --- | ---: | ---: | ---: |`)
  for (const [name, xs] of rows) {
    const s = stats(xs)
    console.log(`| ${name} | ${s.median.toFixed(0)} | ${s.min.toFixed(0)} | ${xs.length} |`)
  }
}

await main()
