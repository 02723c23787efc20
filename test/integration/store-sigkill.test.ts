// Kills a writer child process with SIGKILL at random moments, again and again, and checks
// after each kill: no partial .cla visible, every indexed row has its file, every
// acknowledged put is indexed and published, verify() finds nothing corrupt, files that
// were sealed but not yet indexed are indexed when the store is opened (unpublished on a
// core: no put acknowledged them), staging leftovers are cleaned on open.
// The same for a POP store's ingest (syncfs durability, whole staged p0 folders renamed
// into place): acknowledged batches and their cursor are indexed, tampered files are never
// visible, nothing visible is partial.
import t from 'tap'
import { childEnv } from '../fixtures/child-env.js'
import { spawn } from 'node:child_process'
import { existsSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { randomBytes } from 'node:crypto'
import { BlobStore, type BlobInfo } from '../../lib/store/index.js'
import { getMeta } from '../../lib/db/meta.js'
import { REPO, tempData } from '../fixtures/store/helpers.js'

const ROUNDS = 6

interface Ack {
  seq: number
  path: string
  sha256: string
}

function runAndKill(
  dataDir: string,
  ackTarget: number,
  extraMs: number,
  fixture = 'writer.ts',
  extraArgs: string[] = [],
): Promise<{ acks: Ack[]; signal: string | null }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      [
        '--import',
        `file://${REPO}node_modules/tsx/dist/loader.mjs`,
        join(REPO, 'test/fixtures/store', fixture),
        dataDir,
        ...extraArgs,
      ],
      // no coverage from this tsx-run child: tap cannot merge it (see scripts/clavitor)
      {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: childEnv(),
      },
    )
    const acks: Ack[] = []
    let buf = ''
    let stderr = ''
    let killing = false
    let done = false
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString()
      let nl: number
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 1)
        const [word, seq, path, sha256] = line.split(' ')
        if (word === 'ack') acks.push({ seq: Number(seq), path: path!, sha256: sha256! })
        if (word === 'done') done = true
      }
      if (!killing && (acks.length >= ackTarget || done)) {
        killing = true
        setTimeout(() => child.kill('SIGKILL'), extraMs)
      }
    })
    child.on('error', reject)
    child.on('exit', (code, signal) => {
      if (signal !== 'SIGKILL') reject(new Error(`writer exited ${code} ${signal}: ${stderr}`))
      else resolve({ acks, signal })
    })
  })
}

t.test('SIGKILL at random moments never leaves a partial or unindexed-and-lost blob', async (t) => {
  const data = tempData(t)
  const init = await BlobStore.init({ dataDir: data, onWarning: () => {} })
  await init.close()
  const allAcks: Ack[] = []
  let recovered = 0
  let leftovers = 0
  for (let round = 1; round <= ROUNDS; round++) {
    const { acks } = await runAndKill(
      data,
      5 + Math.floor(Math.random() * 80),
      Math.floor(Math.random() * 25),
    )
    allAcks.push(...acks)
    leftovers += readdirSync(join(data, 'staging')).length
    const s = await BlobStore.open({ dataDir: data, onWarning: () => {} })
    t.same(readdirSync(join(data, 'staging')), [], `round ${round}: staging cleaned on open`)
    const before = await s.verify()
    t.same(before.corrupt, [], `round ${round}: no partial or corrupt .cla visible`)
    t.same(before.missing, [], `round ${round}: every indexed row has its file`)
    for (const a of acks) {
      const row = s.bySeq(a.seq)
      t.ok(
        row && row.path === a.path && row.sha256 === a.sha256,
        `round ${round}: acked seq ${a.seq} is indexed`,
      )
    }
    // the dead writer's linked-but-unindexed files were indexed when the store was opened,
    // unpublished (no put acknowledged them): verify is clean before any write
    t.same(before.unindexed, [], `round ${round}: healed at open, nothing unindexed`)
    recovered += s.healed?.recovered ?? 0
    const rb = await s.rebuildIndex()
    t.same(rb.corrupt, [])
    t.same(rb.conflicts, [])
    t.equal(rb.indexed, 0, `round ${round}: nothing left for an explicit rebuild`)
    const feed = new Set(s.changesAfter(null, 100_000).items.map((i) => i.seq))
    t.ok(
      allAcks.every((a) => feed.has(a.seq)),
      `round ${round}: every acknowledged put is published`,
    )
    const after = await s.verify()
    t.ok(after.ok, `round ${round}: verify clean after rebuild`)
    if (!after.ok) t.comment(JSON.stringify(after))
    // the index is one strictly increasing chain of (created_at, seq)
    const rows = s.changesAfter(null, 100_000).items
    let okOrder = true
    for (let i = 1; i < rows.length; i++) {
      if (!(rows[i]!.seq > rows[i - 1]!.seq && rows[i]!.created_at > rows[i - 1]!.created_at))
        okOrder = false
    }
    t.ok(
      okOrder,
      `round ${round}: seq and created_at strictly increase together (${rows.length} rows)`,
    )
    await s.close()
  }
  t.ok(allAcks.length > 0)
  t.comment(
    `${allAcks.length} acknowledged puts, ${recovered} unindexed files recovered, ${leftovers} staging leftovers`,
  )
})

t.test('SIGKILL of a POP ingest never leaves a partial, unverified or lost blob', async (t) => {
  const core = await BlobStore.init({ dataDir: tempData(t), protection: 'off' })
  // 400 blobs over 60 p0s: new p0 folders are renamed into place, later versions linked
  const p0s = Array.from({ length: 60 }, () => randomBytes(16).toString('hex'))
  const list: BlobInfo[] = []
  for (let i = 0; i < 400; i++)
    list.push(await core.put(p0s[i % p0s.length]!, randomBytes(64 + (i % 7) * 300)))
  await core.close()
  const tampered = list.filter((_, i) => i % 37 === 5).map((i) => i.path)
  const work = tempData(t)
  const popData = join(work, '..', 'pop')
  const listFile = join(work, '..', 'list.json')
  const tamperedFile = join(work, '..', 'tampered.json')
  writeFileSync(listFile, JSON.stringify(list))
  writeFileSync(tamperedFile, JSON.stringify(tampered))
  const pop = await BlobStore.init({
    dataDir: popData,
    role: 'pop',
    trustKeys: [core.exportPublicKey().publicKey],
    onWarning: () => {},
  })
  await pop.close()
  let recovered = 0
  let cursor = 0
  for (let round = 1; round <= ROUNDS && cursor < list.length; round++) {
    const { acks } = await runAndKill(
      popData,
      1 + Math.floor(Math.random() * 4),
      Math.floor(Math.random() * 40),
      'ingester.ts',
      // odd rounds: syncfs per batch; even rounds: fsync per file and folder
      [core.root, listFile, tamperedFile, round % 2 ? '0' : 'Infinity'],
    )
    const s = await BlobStore.open({ dataDir: popData, onWarning: () => {} })
    const before = await s.verify()
    t.same(before.corrupt, [], `round ${round}: no partial or corrupt .cla visible`)
    t.same(before.missing, [], `round ${round}: every indexed row has its file`)
    cursor = Number(getMeta(s.db, 'test_cursor') ?? '0')
    const acked = Math.max(0, ...acks.map((a) => a.seq))
    t.ok(cursor >= acked, `round ${round}: cursor ${cursor} covers the last ack ${acked}`)
    const good = list.slice(0, cursor).filter((i) => !tampered.includes(i.path))
    t.ok(
      good.every((i) => s.bySeq(i.seq)?.sha256 === i.sha256),
      `round ${round}: every blob before the cursor is indexed (${good.length})`,
    )
    t.same(
      tampered.filter((p) => existsSync(join(s.root, p))),
      [],
      `round ${round}: no tampered file ever became visible`,
    )
    t.same(before.unindexed, [], `round ${round}: healed at open, nothing unindexed`)
    t.same(before.unsealed, [], `round ${round}: and nothing unsealed`)
    recovered += s.healed?.recovered ?? 0
    const rb = await s.rebuildIndex()
    t.same(rb.corrupt, [])
    t.same(rb.conflicts, [])
    const after = await s.verify()
    t.ok(after.ok, `round ${round}: verify clean after rebuild`)
    if (!after.ok) t.comment(JSON.stringify(after))
    await s.close()
  }
  t.comment(`POP cursor at ${cursor}/${list.length}, ${recovered} unindexed files recovered`)
})
