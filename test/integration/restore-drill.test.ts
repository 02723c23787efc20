// The disaster-recovery drill (issue 13; docs/operations.md "Disaster recovery"), with a
// real Litestream process, real SQLite files, a real POP pull over rsync and a real store:
// a core streams meta.db to a replica while it registers credentials, a POP pulls, the
// core's folder is lost, and `restoreCore` rebuilds it from the replica, the POP's store
// and the keys' backup. Twice:
//   1. nothing lost (the POP had pulled everything): same generation, the POP continues
//      without a re-baseline and takes what the restored core writes next;
//   2. the core went back in time (registrations after the POP's last pull): those are
//      forgotten with their credentials rows, the generation goes up, the POP re-baselines
//      and converges with the restored core.
import t from 'tap'
import { spawn, type ChildProcess } from 'node:child_process'
import { cpSync, mkdirSync, rmSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { Credentials } from '../../lib/credentials/index.js'
import { nowMicros } from '../../lib/db/open.js'
import Database from 'better-sqlite3'
import {
  initReplica,
  litestreamBinary,
  replicaConfigPath,
  replicaStatus,
  restoreFromReplica,
} from '../../lib/db/replica.js'
import { restoreCore } from '../../lib/restore.js'
import { listEvents } from '../../lib/audit/log.js'
import {
  indexOf,
  openTestPop,
  startCore,
  tempDir,
  unseal,
  type TestCore,
} from '../fixtures/sync.js'

/**
 * Waits until the replica holds `credentials` registrations: a restore of it into a
 * scratch file, counted (Litestream lists times only to the second, so its listing cannot
 * say "this very row is there"). Also checks replicaStatus agrees it is caught up.
 */
async function untilReplicated(
  dataDir: string,
  replica: string,
  credentials: number,
): Promise<void> {
  let seen = -1
  for (let i = 0; i < 100; i++) {
    const scratch = join(dataDir, '..', `scratch-${i}-${randomBytes(4).toString('hex')}.db`)
    try {
      await restoreFromReplica(replica, scratch)
      const db = new Database(scratch, { readonly: true })
      seen = db.prepare('SELECT COUNT(*) FROM credentials').pluck().get() as number
      db.close()
    } catch {
      seen = -1 // nothing replicated yet
    }
    rmSync(scratch, { force: true })
    if (seen === credentials) {
      const s = await replicaStatus(dataDir)
      if (s.configured && s.last_replicated_at !== null) return
    }
    await new Promise((r) => setTimeout(r, 200))
  }
  throw new Error(`the replica holds ${seen} registrations, expected ${credentials}`)
}

function replicate(dataDir: string): ChildProcess {
  return spawn(litestreamBinary(), ['replicate', '-config', replicaConfigPath(dataDir)], {
    stdio: ['ignore', 'ignore', process.env.CLAVITOR_TEST_DEBUG ? 'inherit' : 'ignore'],
  })
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return
  child.kill('SIGTERM')
  await new Promise((r) => child.once('exit', r))
}

/** A customer, an active subscription and a vault on the core's database. */
function seedVault(core: TestCore): { creds: Credentials; vault: string } {
  const db = core.store.db
  const now = nowMicros()
  db.prepare(
    "INSERT OR IGNORE INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES ('cus_dr', NULL, 1, 'dr@example.com', ?, ?)",
  ).run(now, now)
  db.prepare(
    "INSERT OR IGNORE INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES ('sbs_dr', 'cus_dr', 'active', 'EUR', ?, ?)",
  ).run(now, now)
  const creds = new Credentials(db, core.store)
  const existing = creds.listVaults({ customerId: 'cus_dr' })[0]
  const vault =
    existing?.id ??
    creds.createVault({ customerId: 'cus_dr', subscriptionId: 'sbs_dr', name: 'dr' }).id
  return { creds, vault }
}

async function register(core: TestCore, n: number): Promise<string[]> {
  const { creds, vault } = seedVault(core)
  const p0s: string[] = []
  for (let i = 0; i < n; i++) {
    const p0 = randomBytes(16).toString('hex')
    await creds.registerCredential({ vault, p0, wl3: randomBytes(200) })
    p0s.push(p0)
  }
  return p0s
}

const count = (core: TestCore, sql: string) => core.store.db.prepare(sql).pluck().get() as number

t.test('restore drill: nothing lost, then back in time', async (t) => {
  const base = tempDir(t, 'clavitor-drill-')
  const popDir = join(base, 'pop')
  const keysBackup = join(base, 'keys-backup')
  mkdirSync(popDir)

  // --- a core streaming meta.db, 30 registrations, a POP that pulled them all ----------
  const dir1 = join(base, 'core1')
  mkdirSync(dir1)
  let core = await startCore(t, dir1)
  cpSync(join(dir1, 'keys'), keysBackup, { recursive: true }) // the operator's offline copy
  initReplica(dir1, { replica: join(base, 'replica1'), syncIntervalMs: 100 })
  let ls = replicate(dir1)
  t.teardown(() => stop(ls))
  const first = await register(core, 30)
  let pop = await openTestPop(t, core, popDir, 'pop-a')
  t.equal((await pop.sync.run()).sealed, 30, 'the POP holds all 30')
  await untilReplicated(dir1, join(base, 'replica1'), 30)
  const publicKey = core.store.publicKey!.toString('hex')

  // --- the disk dies ---------------------------------------------------------------------
  await pop.close()
  await core.close()
  await stop(ls)
  unseal(dir1)
  rmSync(dir1, { recursive: true, force: true })

  const dir2 = join(base, 'core2')
  const r1 = await restoreCore({
    dataDir: dir2,
    replica: join(base, 'replica1'),
    storeFrom: join(popDir, 'store'),
    keysFrom: keysBackup,
  })
  t.match(r1, {
    files: 30,
    indexed_unpublished: 0,
    forgotten: { blobs: 0, registrations: 0 },
    corrupt: 0,
    generation: { before: 1, after: 1 },
  })
  core = await startCore(t, dir2)
  t.equal(core.store.publicKey!.toString('hex'), publicKey, 'the same signing key')
  t.equal(count(core, 'SELECT COUNT(*) FROM credentials'), 30, 'every registration back')
  t.equal(listEvents(core.store.db, { kind: 'core.restore' }).length, 1, 'the restore audited')
  // the POP continues: no re-baseline, and it takes what the restored core writes next
  pop = await openTestPop(t, core, popDir, 'pop-a')
  let run = await pop.sync.run()
  t.same(run.alarms, [], 'no re-baseline')
  t.equal(run.sealed, 0)
  await register(core, 5)
  run = await pop.sync.run()
  t.equal(run.sealed, 5, 'new blobs after the restore reach the POP')
  t.same(indexOf(pop.store), indexOf(core.store), 'POP and core hold the same blobs')

  // --- back in time: 10 registrations the POP never pulled, then the disk dies again ----
  initReplica(dir2, { replica: join(base, 'replica2'), syncIntervalMs: 100 })
  ls = replicate(dir2)
  const late = await register(core, 10)
  await untilReplicated(dir2, join(base, 'replica2'), 45)
  await pop.close()
  await core.close()
  await stop(ls)
  unseal(dir2)
  rmSync(dir2, { recursive: true, force: true })

  const dir3 = join(base, 'core3')
  const r2 = await restoreCore({
    dataDir: dir3,
    replica: join(base, 'replica2'),
    storeFrom: join(popDir, 'store'),
    keysFrom: keysBackup,
  })
  t.match(r2, {
    files: 35,
    forgotten: { blobs: 10, registrations: 10 },
    corrupt: 0,
    generation: { before: 1, after: 2 },
  })
  core = await startCore(t, dir3)
  t.equal(core.store.generation, 2)
  const { creds } = seedVault(core)
  t.equal(count(core, 'SELECT COUNT(*) FROM credentials'), 35)
  await t.rejects(creds.latestWl3('cus_dr', late[0]!), { code: 'CLA_ERR_NOT_FOUND' }, 'forgotten')
  t.ok(await creds.latestWl3('cus_dr', first[0]!), 'kept')
  pop = await openTestPop(t, core, popDir, 'pop-a')
  run = await pop.sync.run()
  t.match(
    run.alarms.map((a) => a.code),
    ['CLA_ERR_SYNC_STORE_MISMATCH'],
    'the generation change makes the POP re-baseline',
  )
  await register(core, 3)
  run = await pop.sync.run()
  t.equal(run.sealed, 3)
  t.same(run.alarms, [])
})

t.test('restore refuses what it cannot do, and writes nothing', async (t) => {
  const base = tempDir(t, 'clavitor-drill-')
  const dir = join(base, 'core')
  mkdirSync(dir)
  const core = await startCore(t, dir)
  await t.rejects(
    restoreCore({ dataDir: dir, replica: join(base, 'r'), storeFrom: join(base, 'p') }),
    { code: 'CLA_ERR_EXISTS' },
    'never over a live core',
  )
  await core.close()
  await t.rejects(
    restoreCore({
      dataDir: join(base, 'new1'),
      replica: join(base, 'r'),
      storeFrom: join(base, 'p'),
    }),
    { code: 'CLA_ERR_RESTORE_NO_KEYS' },
  )
  await t.rejects(
    restoreCore({
      dataDir: join(base, 'new2'),
      replica: join(base, 'empty-replica'),
      storeFrom: join(base, 'p'),
      keysFrom: join(dir, 'keys'),
    }),
    { code: 'CLA_ERR_REPLICA_EMPTY' },
  )
  await t.rejects(
    restoreCore({
      dataDir: join(base, 'new3'),
      replica: 'relative/path',
      storeFrom: join(base, 'p'),
      keysFrom: join(dir, 'keys'),
    }),
    { code: 'CLA_ERR_INVALID_OPTION' },
  )
})
