import t from 'tap'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { credFixture, p0Of } from '../../fixtures/credentials.js'
import { listEvents } from '../../../lib/audit/log.js'
import { decodeCla, readAttrs } from '../../../lib/store/index.js'
import { CredentialRegistry } from '../../../lib/credentials/registry.js'
import { Credentials } from '../../../lib/credentials/index.js'

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex')

async function setup(tt: { teardown(fn: () => unknown): void }, opts = {}) {
  const f = await credFixture((fn) => tt.teardown(fn), opts)
  f.addCustomer('acme')
  f.addCustomer('rival')
  f.addSubscription('sub_acme', 'acme', 'active')
  f.addSubscription('sub_rival', 'rival', 'active')
  const vault = f.credentials.createVault({
    customerId: 'acme',
    subscriptionId: 'sub_acme',
    name: 'acme',
  })
  const vault2 = f.credentials.createVault({
    customerId: 'acme',
    subscriptionId: 'sub_acme',
    name: 'acme 2',
  })
  const rival = f.credentials.createVault({
    customerId: 'rival',
    subscriptionId: 'sub_rival',
    name: 'rival',
  })
  return { f, vault, vault2, rival }
}

t.test('register stores a sealed .cla and links it; a second WL3 adds a version', async (t) => {
  const { f, vault, vault2 } = await setup(t)
  const p0 = p0Of(1)
  const w1 = Buffer.from('first wl3 bytes')
  const r1 = await f.credentials.registerCredential({ vault: vault.id, p0, wl3: w1 })
  t.match(r1, { p0, vault_id: vault.id, version: 1, sha256: sha(w1), size: w1.length })
  t.match(r1.path, new RegExp(`^${p0.slice(0, 2)}/${p0}/\\d+_[0-9a-f]+\\.cla$`))
  const file = readFileSync(join(f.dir, 'store', r1.path))
  const decoded = decodeCla(file)
  t.equal(decoded.p0, p0)
  t.same(Buffer.from(decoded.payload), w1, 'the .cla carries the WL3 as its payload')
  if (f.store.status().protection.honoured) {
    const attrs = await readAttrs([join(f.dir, 'store', r1.path)])
    t.match([...attrs.values()][0], /i/, 'the .cla is sealed immutable')
  } else {
    t.comment('filesystem does not honour chattr here; sealing not checked')
  }

  const w2 = Buffer.from('second wl3 bytes, from another vault of the same customer')
  const r2 = await f.credentials.registerCredential({ vault: vault2.id, p0, wl3: w2 })
  t.equal(r2.version, 2)
  t.ok(r2.seq > r1.seq)
  t.ok(r2.created_at > r1.created_at)
  t.same(f.counts(), { credentials: 2, blobs: 2, published: 2, files: 2, vaults: 3, keys: 0 })

  const latest = await f.credentials.latestWl3('acme', p0)
  t.match(latest, { version: 2, versions: 2, seq: r2.seq, sha256: sha(w2) })
  t.same(latest.payload, w2)
  const v1 = await f.credentials.latestWl3('acme', p0, { version: 1 })
  t.same(v1.payload, w1)
  await t.rejects(f.credentials.latestWl3('acme', p0, { version: 3 }), {
    code: 'CLA_ERR_NOT_FOUND',
  })
  await t.rejects(f.credentials.latestWl3('acme', p0, { version: 0 }), {
    code: 'CLA_ERR_NOT_FOUND',
  })
  await t.rejects(
    f.credentials.latestWl3('rival', p0),
    { code: 'CLA_ERR_NOT_FOUND' },
    "another customer's P0 looks unknown",
  )
  await t.rejects(f.credentials.latestWl3('acme', p0Of(9)), { code: 'CLA_ERR_NOT_FOUND' })
  await t.rejects(f.credentials.latestWl3('acme', 'XYZ'), { code: 'CLA_ERR_INVALID_P0' })

  const ev = listEvents(f.db, { kind: 'credential.register', order: 'asc' })
  t.equal(ev.length, 2)
  t.match(JSON.parse(ev[1]!.data!), { p0, version: 2, seq: r2.seq })
})

t.test('bad input is refused with its code and changes nothing', async (t) => {
  const { f, vault, rival } = await setup(t, { maxWl3Bytes: 1024 })
  await f.credentials.registerCredential({
    vault: rival.id,
    p0: p0Of(7),
    wl3: Buffer.from('rival owns this'),
  })
  const before = f.counts()
  const events = listEvents(f.db).length
  const wl3 = Buffer.from('x')
  const cases: Array<[string, () => Promise<unknown>, string]> = [
    [
      'upper case P0',
      () =>
        f.credentials.registerCredential({
          vault: vault.id,
          p0: p0Of(1).toUpperCase().replace(/0/g, 'A'),
          wl3,
        }),
      'CLA_ERR_INVALID_P0',
    ],
    [
      'odd length P0',
      () => f.credentials.registerCredential({ vault: vault.id, p0: p0Of(1) + 'a', wl3 }),
      'CLA_ERR_INVALID_P0',
    ],
    [
      'short P0',
      () => f.credentials.registerCredential({ vault: vault.id, p0: 'abcd', wl3 }),
      'CLA_ERR_INVALID_P0',
    ],
    [
      'P0 with ..',
      () => f.credentials.registerCredential({ vault: vault.id, p0: '../' + p0Of(1), wl3 }),
      'CLA_ERR_INVALID_P0',
    ],
    [
      'empty WL3',
      () =>
        f.credentials.registerCredential({ vault: vault.id, p0: p0Of(1), wl3: Buffer.alloc(0) }),
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'oversized WL3',
      () =>
        f.credentials.registerCredential({ vault: vault.id, p0: p0Of(1), wl3: Buffer.alloc(1025) }),
      'CLA_ERR_PAYLOAD_TOO_LARGE',
    ],
    [
      'unknown vault',
      () => f.credentials.registerCredential({ vault: 'vlt_0000000000000000', p0: p0Of(1), wl3 }),
      'CLA_ERR_NOT_FOUND',
    ],
    [
      "another customer's P0",
      () => f.credentials.registerCredential({ vault: vault.id, p0: p0Of(7), wl3 }),
      'CLA_ERR_CREDENTIAL_P0_TAKEN',
    ],
  ]
  for (const [name, run, code] of cases) {
    await t.rejects(run(), { code }, name)
  }
  for (const status of ['past_due', 'canceled', 'paused']) {
    f.setSubscriptionStatus('sub_acme', status)
    await t.rejects(
      f.credentials.registerCredential({ vault: vault.id, p0: p0Of(1), wl3 }),
      { code: 'CLA_ERR_SUBSCRIPTION_INACTIVE' },
      status,
    )
  }
  const nosub = f.credentials.createVault({ customerId: 'acme', name: 'no subscription' })
  await t.rejects(f.credentials.registerCredential({ vault: nosub.id, p0: p0Of(1), wl3 }), {
    code: 'CLA_ERR_SUBSCRIPTION_INACTIVE',
  })
  t.same(
    f.counts(),
    { ...before, vaults: before.vaults + 1 },
    'no credential, blob or file was added',
  )
  t.equal(listEvents(f.db).length, events + 1, 'only the vault creation was audited')
  f.setSubscriptionStatus('sub_acme', 'trialing')
  t.equal(
    (
      await f.credentials.registerCredential({
        vault: vault.id,
        p0: p0Of(1),
        wl3: Buffer.alloc(1024, 1),
      })
    ).version,
    1,
    'trialing registers, at exactly the limit',
  )
})

t.test('the limit is an option, checked once', async (t) => {
  const { f } = await setup(t)
  t.equal(f.credentials.maxWl3Bytes, 64 * 1024, 'default 64 KiB')
  t.throws(() => new CredentialRegistry(f.db, f.store, { maxWl3Bytes: 0 }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
  t.throws(() => new CredentialRegistry(f.db, f.store, { maxWl3Bytes: 1.5 }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
})

t.test('concurrent registrations of one P0 by two customers: exactly one wins', async (t) => {
  const { f, vault, rival } = await setup(t)
  const p0 = p0Of(3)
  const results = await Promise.allSettled([
    f.credentials.registerCredential({ vault: vault.id, p0, wl3: Buffer.from('a') }),
    f.credentials.registerCredential({ vault: rival.id, p0, wl3: Buffer.from('b') }),
    f.credentials.registerCredential({ vault: vault.id, p0, wl3: Buffer.from('c') }),
  ])
  t.same(
    results.map((r) => r.status),
    ['fulfilled', 'rejected', 'fulfilled'],
  )
  t.match((results[1] as PromiseRejectedResult).reason, { code: 'CLA_ERR_CREDENTIAL_P0_TAKEN' })
  t.same(f.counts().blobs, 2, 'the refused one stored no blob')
  t.same((await f.credentials.latestWl3('acme', p0)).payload, Buffer.from('c'))
})

t.test('listCredentials: metadata only, per customer, one entry per P0, paged', async (t) => {
  const { f, vault, rival } = await setup(t)
  for (const n of [5, 1, 3])
    await f.credentials.registerCredential({
      vault: vault.id,
      p0: p0Of(n),
      wl3: Buffer.from(`w${n}`),
    })
  await f.credentials.registerCredential({
    vault: vault.id,
    p0: p0Of(3),
    wl3: Buffer.from('w3 again'),
  })
  await f.credentials.registerCredential({
    vault: rival.id,
    p0: p0Of(2),
    wl3: Buffer.from('rival'),
  })
  const all = f.credentials.listCredentials('acme')
  t.same(
    all.items.map((i) => i.p0),
    [p0Of(1), p0Of(3), p0Of(5)],
  )
  t.equal(all.next, null)
  const three = all.items[1]!
  t.match(three, {
    versions: 2,
    vault_id: vault.id,
    latest: { version: 2, sha256: sha(Buffer.from('w3 again')), size: 8 },
  })
  t.notOk('payload' in three || 'wl3' in three, 'no WL3 bytes in the list')
  const p1 = f.credentials.listCredentials('acme', { limit: 2 })
  t.equal(p1.items.length, 2)
  t.equal(p1.next, p0Of(3))
  const p2 = f.credentials.listCredentials('acme', { limit: 2, after: p1.next! })
  t.same(
    p2.items.map((i) => i.p0),
    [p0Of(5)],
  )
  t.equal(p2.next, null)
  t.same(
    f.credentials.listCredentials('rival').items.map((i) => i.p0),
    [p0Of(2)],
  )
  t.same(f.credentials.listCredentials('nobody').items, [])
  t.equal(
    f.credentials.listVaults({ customerId: 'acme' }).find((v) => v.id === vault.id)!.credentials,
    3,
  )
})

t.test('a registration that fails after its file was written is never published', async (t) => {
  const { f, vault, rival } = await setup(t)
  const p0 = p0Of(4)
  // two registries over one store stand for two core processes: nothing serialises them,
  // so the ownership re-check inside the blob's own transaction is what refuses the loser
  const other = new Credentials(f.db, f.store)
  const results = await Promise.allSettled([
    f.credentials.registerCredential({ vault: vault.id, p0, wl3: Buffer.from('acme') }),
    other.registerCredential({ vault: rival.id, p0, wl3: Buffer.from('rival') }),
  ])
  t.same(
    results.map((r) => r.status),
    ['fulfilled', 'rejected'],
  )
  t.match((results[1] as PromiseRejectedResult).reason, { code: 'CLA_ERR_CREDENTIAL_P0_TAKEN' })
  t.equal(f.counts().blobs, 2, 'both files were written (WORM: the loser cannot be removed)')
  t.equal(f.store.status().unpublished, 1, 'the loser is kept unpublished')
  const feed = f.store.changesAfter(null, 100).items
  t.same(
    feed.map((b) => b.sha256),
    [sha(Buffer.from('acme'))],
    'the feed lists only the registration that committed',
  )
  t.equal(f.store.latest(p0)!.sha256, sha(Buffer.from('acme')), 'and it is the latest')
  t.equal(f.counts().credentials, 1)
})

t.test('an idempotency key answers a retry with the first registration', async (t) => {
  const { f, vault, vault2 } = await setup(t)
  const p0 = p0Of(5)
  const wl3 = Buffer.from('first')
  const first = await f.credentials.registerCredential({
    vault: vault.id,
    p0,
    wl3,
    idempotencyKey: 'k-1',
  })
  t.equal(first.replayed, false)
  const again = await f.credentials.registerCredential({
    vault: vault.id,
    p0,
    wl3,
    idempotencyKey: 'k-1',
  })
  t.same({ ...again, replayed: false }, first, 'the same registration')
  t.equal(again.replayed, true)
  t.equal(f.counts().blobs, 1, 'no second version')
  // the key is the vault's: another vault may use the same key for its own registration
  const v2 = await f.credentials.registerCredential({
    vault: vault2.id,
    p0,
    wl3,
    idempotencyKey: 'k-1',
  })
  t.same([v2.replayed, v2.version], [false, 2])
  // the same key for another WL3 or P0 is a client bug: refused, nothing stored
  await t.rejects(
    f.credentials.registerCredential({
      vault: vault.id,
      p0,
      wl3: Buffer.from('other'),
      idempotencyKey: 'k-1',
    }),
    { code: 'CLA_ERR_IDEMPOTENCY_CONFLICT' },
  )
  await t.rejects(
    f.credentials.registerCredential({ vault: vault.id, p0: p0Of(6), wl3, idempotencyKey: 'k-1' }),
    { code: 'CLA_ERR_IDEMPOTENCY_CONFLICT' },
  )
  await t.rejects(
    f.credentials.registerCredential({ vault: vault.id, p0, wl3, idempotencyKey: 'has space' }),
    { code: 'CLA_ERR_INVALID_INPUT' },
  )
  t.equal(f.counts().blobs, 2)
  // retries racing their first attempt wait behind it and answer it
  const raced = await Promise.all(
    [1, 2, 3].map(() =>
      f.credentials.registerCredential({
        vault: vault.id,
        p0,
        wl3: Buffer.from('third'),
        idempotencyKey: 'k-3',
      }),
    ),
  )
  t.same(
    raced.map((r) => r.replayed),
    [false, true, true],
  )
  t.equal(new Set(raced.map((r) => r.seq)).size, 1, 'one blob for three attempts')
})

/** Drops blob index rows as a lost or not-yet-rebuilt index would (foreign keys off for it). */
function dropIndexRows(
  db: { pragma(s: string): unknown; prepare(s: string): { run(...a: unknown[]): unknown } },
  seqs: number[],
): void {
  db.pragma('foreign_keys = OFF')
  for (const seq of seqs) db.prepare('DELETE FROM blobs WHERE seq = ?').run(seq)
  db.pragma('foreign_keys = ON')
}

t.test('list pages to the end although the index lacks some blobs', async (t) => {
  const { f, vault } = await setup(t)
  const regs = []
  for (let i = 1; i <= 6; i++)
    regs.push(
      await f.credentials.registerCredential({
        vault: vault.id,
        p0: p0Of(i),
        wl3: Buffer.from(`w${i}`),
      }),
    )
  dropIndexRows(f.db, [regs[1]!.seq, regs[2]!.seq]) // P0s 2 and 3 lose their index rows
  const seen: string[] = []
  let after: string | undefined
  for (let pages = 0; pages < 10; pages++) {
    const page = f.credentials.listCredentials('acme', { limit: 2, ...(after ? { after } : {}) })
    seen.push(...page.items.map((i) => i.p0))
    if (page.next === null) break
    t.equal(page.items.length, 2, 'a page that is not the last one is full')
    after = page.next
  }
  t.same(seen, [1, 4, 5, 6].map(p0Of), 'every P0 the index still holds, none skipped')
})
