// Disaster recovery figures (docs/operations.md "Disaster recovery"): RTO of
// `restoreCore` (meta.db from its Litestream replica, the store from a POP's copy, index,
// verify) at --blobs blobs, against baselines in the same run on the same tree (rsync -a,
// cp -a, litestream restore alone); and RPO of meta.db: rows lost when Litestream and the
// writer are killed together under a steady write load. `npm run bench:restore [-- --blobs
// 10000 --rate 200]`. A benchmark, not part of the package.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { cpSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import Database from 'better-sqlite3'
import { Command } from 'commander'
import { openDb } from '../../lib/db/open.js'
import {
  initReplica,
  litestreamBinary,
  replicaConfigPath,
  restoreFromReplica,
} from '../../lib/db/replica.js'
import { restoreCore } from '../../lib/restore.js'
import { BlobStore } from '../../lib/store/index.js'

const o = new Command()
  .option('--blobs <n>', 'blobs in the store', '10000')
  .option('--rate <n>', 'meta.db rows per second during the RPO run', '200')
  .parse()
  .opts<{ blobs: string; rate: string }>()
const blobs = Number(o.blobs)
const rate = Number(o.rate)
if (!Number.isSafeInteger(blobs) || blobs < 1) throw new Error('--blobs must be a whole number ≥ 1')
if (!Number.isFinite(rate) || rate < 1) throw new Error('--rate must be ≥ 1')

const base = mkdtempSync(join(tmpdir(), 'clavitor-bench-restore-'))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const unseal = (d: string) => {
  try {
    execFileSync('chattr', ['-R', '-i', '-a', d], { stdio: 'ignore' })
  } catch {
    // nothing sealed
  }
}
const timed = async (fn: () => Promise<unknown> | unknown): Promise<number> => {
  const t0 = performance.now()
  await fn()
  return performance.now() - t0
}
const replicate = (dataDir: string): ChildProcess =>
  spawn(litestreamBinary(), ['replicate', '-config', replicaConfigPath(dataDir)], {
    stdio: 'ignore',
  })
async function kill(c: ChildProcess, sig: NodeJS.Signals): Promise<void> {
  if (c.exitCode !== null) return
  c.kill(sig)
  await new Promise((r) => c.once('exit', r))
}

try {
  // --- a core with `blobs` blobs, replicated; a POP's copy of its store ---------------
  const core = join(base, 'core')
  mkdirSync(core)
  const store = await BlobStore.init({
    dataDir: core,
    protection: 'best-effort',
    onWarning: () => {},
  })
  initReplica(core, { replica: join(base, 'replica'), syncIntervalMs: 1000 })
  let ls = replicate(core)
  for (let i = 0; i < blobs; i += 500) {
    await Promise.all(
      Array.from({ length: Math.min(500, blobs - i) }, () =>
        store.put(randomBytes(16).toString('hex'), randomBytes(300)),
      ),
    )
  }
  await store.close()
  const pop = join(base, 'pop-store')
  execFileSync('rsync', ['-a', `${join(core, 'store')}/`, `${pop}/`])
  await sleep(3000) // Litestream ships the last WAL (sync interval 1 s)
  await kill(ls, 'SIGTERM')
  cpSync(join(core, 'keys'), join(base, 'keys'), { recursive: true })

  // --- RTO and its baselines on the same tree -------------------------------------------
  const rows: Array<[string, number]> = []
  rows.push([
    'rsync -a of the store (baseline)',
    await timed(() => execFileSync('rsync', ['-a', `${pop}/`, `${join(base, 'b1')}/`])),
  ])
  rows.push([
    'cp -a of the store (baseline)',
    await timed(() => execFileSync('cp', ['-a', pop, join(base, 'b2')])),
  ])
  rows.push([
    'litestream restore of meta.db alone (baseline)',
    await timed(() => restoreFromReplica(join(base, 'replica'), join(base, 'b3.db'))),
  ])
  const db = new Database(join(core, 'meta.db'), { readonly: true })
  rows.push([
    'sqlite backup of meta.db (baseline)',
    await timed(() => db.backup(join(base, 'b4.db'))),
  ])
  db.close()
  let report: Awaited<ReturnType<typeof restoreCore>> | undefined
  rows.push([
    'restoreCore: meta.db + store + index + verify',
    await timed(async () => {
      report = await restoreCore({
        dataDir: join(base, 'restored'),
        replica: join(base, 'replica'),
        storeFrom: pop,
        keysFrom: join(base, 'keys'),
        protection: 'best-effort',
      })
    }),
  ])

  // --- RPO: a steady writer and Litestream killed together ------------------------------
  const rpoDir = join(base, 'rpo')
  mkdirSync(rpoDir)
  const rdb = openDb(join(rpoDir, 'meta.db')) // WAL, synchronous=FULL: as the core writes
  rdb.exec('CREATE TABLE bench_rows (n INTEGER PRIMARY KEY, at INTEGER NOT NULL)')
  const ins = rdb.prepare('INSERT INTO bench_rows (n, at) VALUES (?, ?)')
  initReplica(rpoDir, { replica: join(base, 'rpo-replica'), syncIntervalMs: 1000 })
  ls = replicate(rpoDir)
  let written = 0
  const startAt = Date.now()
  const stopAt = startAt + 15_000
  while (Date.now() < stopAt) {
    ins.run(written, Date.now())
    written++
    await sleep(1000 / rate)
  }
  await kill(ls, 'SIGKILL') // the host dies: writer and Litestream together
  rdb.close()
  await restoreFromReplica(join(base, 'rpo-replica'), join(base, 'rpo-restored.db'))
  const back = new Database(join(base, 'rpo-restored.db'), { readonly: true })
  const kept = back.prepare('SELECT COUNT(*) FROM bench_rows').pluck().get() as number
  back.close()
  const lost = written - kept
  const measured = written / ((stopAt - startAt) / 1000) // the rate actually reached

  console.log(`\nRTO at ${blobs.toLocaleString('en')} blobs (same tree, same run)\n`)
  console.log('| step | ms |\n| --- | ---: |')
  for (const [name, ms] of rows) console.log(`| ${name} | ${ms.toFixed(0)} |`)
  console.log(
    `\nrestoreCore parts: meta.db ${report!.ms.meta} ms, store copy ${report!.ms.store} ms, verify ${report!.ms.verify} ms; ${report!.files} files, corrupt ${report!.corrupt}`,
  )
  console.log(
    `\nRPO of meta.db (sync interval 1 s, ${measured.toFixed(0)} rows/s reached, SIGKILL of Litestream): ${written} rows written, ${kept} restored, ${lost} lost = ${(lost / measured).toFixed(2)} s of writes`,
  )
} finally {
  unseal(base)
  rmSync(base, { recursive: true, force: true })
}
