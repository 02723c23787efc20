// lib/store/publish-signal.ts: the store tells listeners in its process of the rows each
// commit published (and only those), and a core store tells other processes through the
// hint file {data}/run/published, which watchPublished() sees without polling.
import t, { type Test } from 'tap'
import { execFile } from 'node:child_process'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { promisify } from 'node:util'
import {
  BlobStore,
  publishHintPath,
  watchPublished,
  type BlobInfo,
} from '../../../lib/store/index.js'
import { REPO, tempData, P0A, P0B } from '../../fixtures/store/helpers.js'
import { popStore, startCore, tempDir } from '../../fixtures/sync.js'
import { pullOnce } from '../../../lib/pop-sync/pull.js'
import { pullOptions } from '../../fixtures/sync.js'

const run = promisify(execFile)

/** A store of its own (unsealed) that collects its warnings. */
async function storeWithWarnings(
  t: Test,
): Promise<{ data: string; s: BlobStore; warnings: string[] }> {
  const data = tempData(t)
  const warnings: string[] = []
  const s = await BlobStore.init({
    dataDir: data,
    protection: 'off',
    onWarning: (m) => warnings.push(m),
  })
  t.teardown(() => s.close())
  return { data, s, warnings }
}

t.test('listeners get the rows a put group published, after its commit', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data, protection: 'off' })
  t.teardown(() => s.close())
  const seen: BlobInfo[][] = []
  const visibleAtCall: number[] = []
  const off = s.onPublished((infos) => {
    seen.push([...infos])
    // the commit is done when listeners run: the rows are readable
    visibleAtCall.push(s.index.count())
  })
  const [a, b] = await Promise.all([s.put(P0A, Buffer.from('one')), s.put(P0B, Buffer.from('two'))])
  t.same(
    seen.flat().map((i) => i.seq),
    [a.seq, b.seq],
    'each published row once, in seq order',
  )
  t.equal(visibleAtCall[visibleAtCall.length - 1], 2, 'rows committed before the call')
  // a put whose caller's rows fail is not published: not signalled either
  await t.rejects(
    s.put(P0A, Buffer.from('three'), {
      inTransaction: () => {
        throw new Error('caller rows failed')
      },
    }),
  )
  t.equal(seen.flat().length, 2, 'an unpublished row is not signalled')
  off()
  await s.put(P0A, Buffer.from('four'))
  t.equal(seen.flat().length, 2, 'a removed listener is not called')
})

t.test('a listener that throws does not fail the put; the store warns', async (t) => {
  const { s, warnings } = await storeWithWarnings(t)
  s.onPublished(() => {
    throw new Error('listener bug')
  })
  const info = await s.put(P0A, Buffer.from('x'))
  t.equal(s.latest(P0A)?.seq, info.seq, 'the put committed')
  t.match(warnings.join('\n'), /publish listener failed: listener bug/)
})

t.test('a core store writes the hint file with its newest seq; a POP store does not', async (t) => {
  const core = await startCore(t, join(tempDir(t), 'core'))
  const hint = publishHintPath(core.dataDir)
  const [info] = await core.addBlobs(1)
  t.equal(Number(readFileSync(hint, 'utf8')), info!.seq, 'the newest seq')
  const more = await core.addBlobs(3)
  t.equal(Number(readFileSync(hint, 'utf8')), Math.max(...more.map((i) => i.seq)))

  const popDir = join(tempDir(t), 'pop')
  const pop = await popStore(t, popDir, core)
  const got: BlobInfo[] = []
  pop.onPublished((infos) => got.push(...infos))
  await pullOnce(pullOptions(core, pop))
  t.equal(got.length, 4, "a POP's ingest is signalled in its process")
  t.notOk(existsSync(publishHintPath(popDir)), 'no hint file on a POP')
})

t.test('watchPublished wakes a reader when another process publishes', async (t) => {
  const data = tempData(t)
  const s = await BlobStore.init({ dataDir: data, protection: 'off' })
  await s.close() // the writer is the child process below
  let woken = 0
  let wake: () => void = () => undefined
  const w = watchPublished(data, () => {
    woken++
    wake()
  })
  t.teardown(() => w.close())
  const woke = new Promise<void>((r) => (wake = r))
  const payload = join(data, '..', 'payload')
  writeFileSync(payload, 'from another process')
  const { stdout } = await run(join(REPO, 'scripts/clavitor'), [
    'store',
    'put',
    '--data',
    data,
    '--protection',
    'off',
    '--p0',
    P0A,
    '--file',
    payload,
  ])
  await woke
  t.ok(woken >= 1, 'woken by the hint file')
  const seq = (JSON.parse(stdout) as { seq: number }).seq
  t.equal(Number(readFileSync(publishHintPath(data), 'utf8')), seq, 'the hint names the new seq')
})

t.test('a hint that cannot be written is tried again at the next commit', async (t) => {
  const { data, s, warnings } = await storeWithWarnings(t)
  // {data}/run is in the way (a file): the hint cannot be written, the put still commits
  const run = join(data, 'run')
  writeFileSync(run, 'in the way')
  const a = await s.put(P0A, Buffer.from('one'))
  t.equal(s.latest(P0A)?.seq, a.seq)
  t.match(warnings.join('\n'), /cannot write the publish hint/)
  rmSync(run)
  const b = await s.put(P0A, Buffer.from('two'))
  t.equal(Number(readFileSync(publishHintPath(data), 'utf8')), b.seq, 'written once it can be')
})
