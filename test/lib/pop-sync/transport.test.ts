// lib/pop-sync/transport.ts: the POP's feed client refuses a page that the core's store could
// not have produced, with the store's own path rule (not a looser copy of it).
import t from 'tap'
import {
  REPORT_TIMEOUT_MS,
  WAIT_MARGIN_MS,
  checkPage,
  requestFeedClient,
} from '../../../lib/pop-sync/transport.js'
import { blobFileName } from '../../../lib/store/format.js'

const p0 = 'ab'.repeat(16)
const item = (path: string, over: Record<string, unknown> = {}) => ({
  seq: 1,
  created_at: 1_700_000_000_000_000,
  p0,
  path,
  sha256: 'f'.repeat(64),
  file_sha256: 'e'.repeat(64),
  size: 10,
  file_size: 200,
  ...over,
})
const page = (items: unknown[]) => ({
  store_id: 's',
  generation: 1,
  items,
  more: false,
  next: null,
  checkpoint: {}, // its signature and chain are the pull's to check (chain.test.ts)
})
const good = `ab/${p0}/${blobFileName(1_700_000_000_000_000, '0123456789abcdef')}`

t.test('a page of store-shaped items passes', async (t) => {
  t.equal(checkPage(page([item(good)])).items.length, 1)
})

t.test('paths the store never makes are refused', async (t) => {
  for (const [why, path, over] of [
    ['another shard', `cd/${p0}/${good.split('/')[2]}`, {}],
    ['an odd-length p0 folder', `ab/${p0}a/${good.split('/')[2]}`, { p0: `${p0}a` }],
    ['a file name not of a blob', `ab/${p0}/notes.cla`, {}],
    ['a traversal', `ab/${p0}/../x.cla`, {}],
    ['a p0 other than its folder', good, { p0: 'cd'.repeat(16) }],
    ['no whole-file sha256', good, { file_sha256: undefined }],
  ] as Array<[string, string, Record<string, unknown>]>) {
    t.throws(() => checkPage(page([item(path, over)])), { code: 'CLA_ERR_SYNC_FEED' }, why)
  }
})

t.test('a page without its checkpoint is refused', async (t) => {
  t.throws(() => checkPage({ ...page([item(good)]), checkpoint: undefined }), {
    code: 'CLA_ERR_SYNC_FEED',
  })
})

t.test('the client maps HTTP failures to CLA_ERR_SYNC_FEED', async (t) => {
  const client = requestFeedClient({
    request: async () => ({ status: 503, json: { error: { code: 'CLA_ERR_X', message: 'down' } } }),
  })
  await t.rejects(client.page(null, 10), { code: 'CLA_ERR_SYNC_FEED' })
})

t.test('a report and a long-poll carry their own timeouts; the long-poll its signal', async (t) => {
  const seen: Array<{ path: string; query?: Record<string, string>; timeoutMs?: number }> = []
  const client = requestFeedClient({
    request: async (_method, path, opts = {}) => {
      seen.push({
        path,
        ...(opts.query ? { query: opts.query } : {}),
        ...(opts.timeoutMs !== undefined ? { timeoutMs: opts.timeoutMs } : {}),
      })
      return path === '/pop/v1/report'
        ? { status: 200, json: { ok: true } }
        : { status: 200, json: page([item(good)]) }
    },
  })
  await client.report({ cursor: null, ok: true, error: null, blobs: 0 })
  t.equal(seen[0]!.timeoutMs, REPORT_TIMEOUT_MS, 'a report gives up after 10 s, not 30')
  await client.wait!('c1.1.1', 45)
  t.same(seen[1]!.query, { limit: '1', wait: '45', cursor: 'c1.1.1' })
  t.equal(seen[1]!.timeoutMs, 45_000 + WAIT_MARGIN_MS, 'a long-poll waits its wait and a margin')
  const ac = new AbortController()
  ac.abort()
  const aborted = requestFeedClient({
    request: async () => {
      throw new Error('The operation was aborted')
    },
  })
  await t.rejects(aborted.wait!(null, 5, ac.signal), { code: 'CLA_ERR_SYNC_ABORTED' })
})
