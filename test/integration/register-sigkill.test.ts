// A registration is visible everywhere or nowhere (issue 13 item 1). A child registers
// credentials without end (8 in flight, each with an idempotency key) and is killed with
// SIGKILL at random moments, round after round. Then a core and a POP that pulled from it
// must answer the same latest version for every P0; every acknowledged registration is
// there; and retrying every attempted key (what a client that lost the answer does) never
// makes a second version.
import t from 'tap'
import { childEnv } from '../fixtures/child-env.js'
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { openDb } from '../../lib/db/open.js'
import { BlobStore } from '../../lib/store/index.js'
import { Credentials } from '../../lib/credentials/index.js'
import { isClavitorError } from '../../lib/errors.js'
import { nowMicros } from '../../lib/db/open.js'
import { openTestPop, startCore } from '../fixtures/sync.js'
import { REPO, tempData } from '../fixtures/store/helpers.js'

const ROUNDS = 10

/** The WL3 a key stands for: the same as test/fixtures/store/registrar.ts sends. */
function wl3Of(key: string): Buffer {
  const h = createHash('sha256').update(key).digest()
  return Buffer.concat(Array.from({ length: 1 + (h[0]! % 16) }, () => h))
}

interface Attempt {
  key: string
  p0: string
  seq?: number
}

function runAndKill(
  dataDir: string,
  vault: string,
  prefix: string,
  ackTarget: number,
  extraMs: number,
) {
  return new Promise<Attempt[]>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        `file://${REPO}node_modules/tsx/dist/loader.mjs`,
        join(REPO, 'test/fixtures/store/registrar.ts'),
        dataDir,
        vault,
        prefix,
      ],
      // no coverage from this tsx-run child: tap cannot merge it (see scripts/clavitor)
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: childEnv(),
      },
    )
    const attempts = new Map<string, Attempt>()
    let acks = 0
    let buf = ''
    let stderr = ''
    let killing = false
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const [word, key, p0, seq] = buf.slice(0, nl).split(' ')
        buf = buf.slice(nl + 1)
        if (word === 'try') attempts.set(key!, { key: key!, p0: p0! })
        if (word === 'ack') {
          attempts.get(key!)!.seq = Number(seq)
          acks++
        }
      }
      if (!killing && acks >= ackTarget) {
        killing = true
        setTimeout(() => child.kill('SIGKILL'), extraMs)
      }
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`registrar exited ${code} ${signal}: ${stderr}`))
      else resolve([...attempts.values()])
    })
  })
}

t.test('SIGKILLs never publish a registration the core does not answer', async (t) => {
  const data = tempData(t, 'clavitor-register-kill-')
  {
    mkdirSync(data, { recursive: true })
    const db = openDb(join(data, 'meta.db'))
    const store = await BlobStore.init({ dataDir: data, db, onWarning: () => {} })
    const now = nowMicros()
    db.prepare(
      "INSERT INTO customers (id, parent_id, level, name, email, created_at, updated_at) VALUES ('acme', NULL, 1, 'acme', 'acme@example.test', ?, ?)",
    ).run(now, now)
    db.prepare(
      "INSERT INTO subscriptions (id, customer_id, status, currency_code, created_at, updated_at) VALUES ('sub_acme', 'acme', 'active', 'EUR', ?, ?)",
    ).run(now, now)
    const vault = new Credentials(db, store).createVault({
      customerId: 'acme',
      subscriptionId: 'sub_acme',
      name: 'acme',
    })
    await store.close()
    db.close()
    t.context.vault = vault.id
  }
  const vault = t.context.vault as string
  const attempts: Attempt[] = []
  for (let round = 1; round <= ROUNDS; round++) {
    attempts.push(
      ...(await runAndKill(
        data,
        vault,
        `r${round}`,
        5 + Math.floor(Math.random() * 60),
        Math.floor(Math.random() * 30),
      )),
    )
  }
  const acked = attempts.filter((a) => a.seq !== undefined)
  t.ok(acked.length > 0 && acked.length < attempts.length, 'some acknowledged, some cut off')

  const core = await startCore(t, join(data))
  const creds = new Credentials(core.store.db, core.store)
  const pop = await openTestPop(t, core, join(data, '..', 'pop'), 'pop-k')
  const p0s = [...new Set(attempts.map((a) => a.p0))].sort()
  const coreLatest = async (p0: string) => {
    try {
      return (await creds.latestWl3('acme', p0)).seq
    } catch (err) {
      if (isClavitorError(err, 'CLA_ERR_NOT_FOUND')) return null
      throw err
    }
  }
  const popLatest = async (p0: string) => {
    try {
      return (await pop.lookup.latest(p0)).info.seq
    } catch (err) {
      if (isClavitorError(err, 'CLA_ERR_NOT_FOUND')) return null
      throw err
    }
  }
  const disagreements = async () => {
    await pop.sync.run()
    pop.lookup.invalidate()
    const out: string[] = []
    for (const p0 of p0s) {
      const [c, p] = [await coreLatest(p0), await popLatest(p0)]
      if (c !== p) out.push(`${p0}: core ${c} pop ${p}`)
    }
    return out
  }

  t.same(await disagreements(), [], 'core and POP answer the same latest version for every P0')
  for (const a of acked) {
    const seqs = core.store.db
      .prepare('SELECT blob_seq FROM credentials WHERE idempotency_key = ?')
      .pluck()
      .all(a.key)
    if (seqs.length !== 1 || seqs[0] !== a.seq) t.fail(`acknowledged ${a.key} is not registered`)
  }
  t.pass(`${acked.length} acknowledged registrations all registered`)

  // every attempt retried with its key: an acknowledged one answers itself; one cut off
  // answers itself if it committed, else registers now; none adds a second version
  let replayed = 0
  for (const a of attempts) {
    const r = await creds.registerCredential({
      vault,
      p0: a.p0,
      wl3: wl3Of(a.key),
      idempotencyKey: a.key,
    })
    if (a.seq !== undefined && (r.seq !== a.seq || !r.replayed))
      t.fail(`retry of acknowledged ${a.key} made seq ${r.seq}, not ${a.seq}`)
    if (r.replayed) replayed++
  }
  const rows = core.store.db
    .prepare('SELECT COUNT(*) FROM credentials WHERE idempotency_key IS NOT NULL')
    .pluck()
    .get()
  t.equal(rows, attempts.length, 'one registration per key, retries included')
  t.ok(replayed >= acked.length, `${replayed} retries answered the first registration`)
  t.same(await disagreements(), [], 'and still one answer for every P0')
  const unpublished = core.store.index.unpublished()
  t.comment(
    `${ROUNDS} kills: ${attempts.length} attempts, ${acked.length} acknowledged, ${unpublished} blobs kept unpublished`,
  )
})
