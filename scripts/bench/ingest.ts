// scripts/clavitor-ts scripts/bench/ingest.ts [--n 5000] [--page 1000] [--rounds 2] [--before DIR]
//
// BlobStore.ingest alone, without rsync competing for the CPU: builds a core store of N
// blobs of 2 KiB (one p0 each), stages them page by page ({run}/{shard}/{p0}/{name}, plain
// copies: whole p0 folders renamed into place; lib/pop-sync/pull.ts now stages flat, each
// file renamed into a p0 folder made for the batch), and ingests each page into a fresh POP store
// (sealed when the machine allows). Prints blobs/s and the Node process's CPU per blob.
// --before DIR: also run the store code of another checkout (e.g. a `git archive` of an
// older commit with node_modules linked in), alternating with this one, for a before/after.
// A benchmark, not a test: figures go to docs/performance.md ("Sync").
import { copyFileSync, mkdirSync, mkdtempSync } from 'node:fs'
import { execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { dirname, join, resolve } from 'node:path'
import { Command, Option } from 'commander'
import { BlobStore, type BlobInfo } from '../../lib/store/index.js'

const o = new Command()
  .name('bench:ingest')
  .addOption(new Option('--n <n>', 'blobs').default('5000'))
  .addOption(new Option('--page <n>', 'blobs per ingest batch').default('1000'))
  .addOption(new Option('--rounds <n>', 'rounds per code version').default('2'))
  .addOption(new Option('--before <dir>', 'another checkout to compare against'))
  .parse()
  .opts<{ n: string; page: string; rounds: string; before?: string }>()
const N = Number(o.n)
const PAGE = Number(o.page)
const REPO = new URL('../../', import.meta.url).pathname

const work = mkdtempSync(join(tmpdir(), 'clavitor-bench-ingest-'))
try {
  const core = await BlobStore.init({ dataDir: join(work, 'core'), protection: 'off' })
  const infos: BlobInfo[] = await Promise.all(
    Array.from({ length: N }, () => core.put(randomBytes(16).toString('hex'), randomBytes(2048))),
  )
  await core.close()
  const versions: Array<[string, string]> = [['this', REPO]]
  if (o.before) versions.unshift(['before', resolve(o.before)])
  console.log(`| code | round | batches of | blobs/s | Node CPU µs/blob |`)
  console.log(`| --- | ---: | ---: | ---: | ---: |`)
  for (let round = 1; round <= Number(o.rounds); round++) {
    for (const [label, root] of versions) {
      const mod = (await import(join(root, 'lib/store/index.ts'))) as {
        BlobStore: typeof BlobStore
      }
      const pop = await mod.BlobStore.init({
        dataDir: join(work, `pop-${label}-${round}`),
        role: 'pop',
        trustKeys: [core.publicKey!],
        onWarning: () => {},
      })
      let wall = 0
      let cpu = 0
      for (let off = 0; off < N; off += PAGE) {
        const run = join(work, `run-${label}-${round}-${off}`)
        const staged = infos.slice(off, off + PAGE).map((i) => {
          const file = join(run, i.path)
          mkdirSync(dirname(file), { recursive: true })
          copyFileSync(join(core.root, i.path), file)
          return { file, expect: i }
        })
        const t0 = process.hrtime.bigint()
        const c0 = process.cpuUsage()
        await pop.ingest(staged)
        const c = process.cpuUsage(c0)
        wall += Number(process.hrtime.bigint() - t0) / 1e9
        cpu += (c.user + c.system) / 1e6
      }
      await pop.close()
      console.log(
        `| ${label} | ${round} | ${PAGE} | ${Math.round(N / wall)} | ${Math.round((cpu / N) * 1e6)} |`,
      )
    }
  }
} finally {
  execFileSync('chattr', ['-R', '-i', '-a', work], { stdio: 'ignore' })
  execFileSync('rm', ['-rf', work])
}
