// Measured propagation (issue 18), end to end with the real processes: the core's
// `core serve` (credentials API), `core pop-api` (mTLS, signed requests, tokens; the feed
// long-poll) and rsync daemon (generated config, per-POP users) in a core network
// namespace, and three `clavitor pop run` (long-poll wait 45 s) each in a namespace of its
// own, joined by a bridge (link-local 169.254.78.0/24 inside the namespaces only). The probe
// (scripts/bench/propagation-probe.ts) runs in the core namespace: under a steady load of
// other registrations it registers 24 credentials and waits until every POP serves each
// one's bytes.
//
// What shows it came by the long-poll and not by the hourly pull, from the POPs' own
// evidence (no timing): the POP ids are picked so that none has its hourly slot within
// 20 minutes; each POP's clavitor_sync_runs_total{trigger="regular"} is the same before
// the first registration and after the last (only the run at start), there is no manual
// run, its wake runs went up, and clavitor_sync_blobs_total went up by at least every blob
// registered meanwhile; the core's pop_sync_state has each POP at the core's head.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { join } from 'node:path'
import {
  CLI,
  isRoot,
  makeTopology,
  popIdsClearOfSlots,
  prepareCore,
  runProbe,
  startAll,
  workDir,
  type Running,
  type Topology,
} from '../../scripts/bench/propagation-env.js'
import Database from 'better-sqlite3'

const MEASURED = 24
const LOAD_RATE = 10 // registrations of other P0s per second, meanwhile

const topo: Topology | string = isRoot ? makeTopology(3) : 'needs root for ip netns'
const why = typeof topo === 'string' ? topo : null
if (typeof topo !== 'string') t.teardown(() => topo.close())

t.test(
  'three POPs in namespaces serve each registration by the long-poll',
  { skip: why ?? false },
  async (t) => {
    const net = topo as Topology
    const work = workDir('clavitor-prop-')
    t.teardown(() => work.remove())
    const ids = popIdsClearOfSlots(3, 'prop', 20 * 60_000)
    const setup = await prepareCore({
      dir: work.dir,
      popIds: ids,
      allow: (i) => `${net.pops[i]!.ip}/32`,
      serverSans: [net.core.ip],
      popStores: true,
    })
    let run: Running | null = null
    t.teardown(async () => {
      await run?.procs.stopAll()
    })
    run = await startAll(setup, {
      coreNs: net.core.ns,
      coreIp: net.core.ip,
      pops: net.pops,
      waitS: 45,
    })

    const report = await runProbe(setup, run, net.core.ns, {
      measured: MEASURED,
      everyMs: 300,
      loadRate: LOAD_RATE,
      pollMs: 20,
      giveUpMs: 120_000,
    })

    t.equal(report.measured.length, MEASURED)
    const missed = report.measured.filter((m) => m.all === null)
    t.same(
      missed.map((m) => m.p0),
      [],
      'every registration served with its bytes and sha256 ETag by every POP',
    )
    t.ok(
      report.load.ok > 0 && report.load.failed === 0,
      `write load: ${JSON.stringify(report.load)}`,
    )

    const written = MEASURED + report.load.ok
    for (const [i, id] of ids.entries()) {
      const b = report.metrics.before[i]!
      const a = report.metrics.after[i]!
      t.equal(a.runs.regular ?? 0, b.runs.regular ?? 0, `${id}: no hourly run meanwhile`)
      t.equal(a.runs.regular, 1, `${id}: the only regular run is the one at start`)
      t.equal(a.runs.manual ?? 0, 0, `${id}: no manual run`)
      t.ok(
        (a.runs.wake ?? 0) > (b.runs.wake ?? 0),
        `${id}: wake runs ${b.runs.wake ?? 0} → ${a.runs.wake}`,
      )
      t.ok(
        a.blobs - b.blobs >= written,
        `${id}: sealed ${a.blobs - b.blobs} blobs by wake runs, ${written} registered`,
      )
      const h = report.health[i]!
      t.equal(h.ok, true, `${id}: healthy`)
    }

    // the core's view (pop_sync_state, from each POP's report after its run): every POP at
    // the core's head (the reports follow the runs by a moment: asked until they agree)
    const db = new Database(join(setup.coreDir, 'meta.db'), { readonly: true })
    const head = db
      .prepare('SELECT created_at, seq FROM blobs ORDER BY created_at DESC, seq DESC LIMIT 1')
      .get() as { created_at: number; seq: number }
    db.close()
    const headCursor = `c1.${head.created_at}.${head.seq}`
    type Listing = { id: string; sync: { cursor: string | null; lag_us: number | null } | null }
    let pops: Listing[] = []
    for (let i = 0; i < 100; i++) {
      pops = JSON.parse(
        execFileSync(CLI, ['core', 'pops', '--data', setup.coreDir], {
          encoding: 'utf8',
          env: { ...process.env, CLAVITOR_LOG_LEVEL: 'warn' },
        }),
      ) as Listing[]
      if (ids.every((id) => pops.find((x) => x.id === id)?.sync?.cursor === headCursor)) break
      await new Promise((r) => setTimeout(r, 200))
    }
    for (const id of ids) {
      const p = pops.find((x) => x.id === id)
      t.equal(p?.sync?.cursor, headCursor, `${id}: the core sees it at its head`)
      t.equal(p?.sync?.lag_us, 0, `${id}: lag 0`)
    }
    t.comment(`propagation ms (slowest POP): ${report.measured.map((m) => m.all).join(', ')}`)
  },
)
