// The admin pages that act, against the fake Paddle through a real core: an MSP's admin
// sells a subscription (invoice and card checkout), cancels it at the period end, makes a
// vault, issues and revokes its key, edits a customer; the owner moves a customer to
// another MSP. Every POST: success, CSRF refused, role refused (a viewer), scope refused.
import t, { type Test } from 'tap'
import { listEvents } from '../../../lib/audit/log.js'
import { startFakePaddle } from '../../../scripts/fake-paddle/server.js'
import { adminApp, csrfFor, seedAdmin } from '../../fixtures/admin.js'
import { seed } from '../../fixtures/billing.js'

process.env.CLAVITOR_PROTECTION = 'off'

async function setup(t: Test) {
  const fake = await startFakePaddle({ apiKey: 'pdl_sdbx_apikey_test' })
  t.teardown(() => fake.close())
  const { core, app } = await adminApp(t, {
    paddle: { apiUrl: fake.url, apiKey: 'pdl_sdbx_apikey_test', webhookSecrets: [fake.secret] },
  })
  const s = await seed(core.billing)
  const other = await core.billing.create('customers', {
    email: 'two@example.com',
    name: 'MSP Two',
  })
  /** POSTs a form with a fresh CSRF token taken from `from`. */
  const post = async (
    cookie: string,
    url: string,
    payload: Record<string, string>,
    from = '/admin',
  ) => {
    const c = await csrfFor(app, cookie, from)
    return app.inject({
      method: 'POST',
      url,
      headers: { cookie: c.cookie },
      payload: { _csrf: c.token, ...payload },
    })
  }
  const get = (cookie: string, url: string) =>
    app.inject({ method: 'GET', url, headers: { cookie } })
  return { core, app, fake, s, other, post, get }
}

t.test('an MSP admin sells, cancels, makes a vault and its key', async (t) => {
  const { core, s, post, get } = await setup(t)
  const op = seedAdmin(core.db, 'operator', 'Otto', String(s.msp.id))
  const page = await get(op.cookie, `/admin/customers/${s.customer.id}`)
  t.equal(page.statusCode, 200)
  t.match(page.body, /id="create-subscription"/)
  t.match(page.body, /id="create-vault"/)
  t.match(page.body, /id="edit-customer"/)

  // an invoice subscription: our row, then Paddle; the page shows it synced
  const sold = await post(op.cookie, '/admin/subscriptions', {
    customer_id: String(s.customer.id),
    address_id: String(s.address.id),
    price_id: String(s.price.id),
    quantity: '2',
    collection_mode: 'manual',
  })
  t.equal(sold.statusCode, 303)
  const subUrl = String(sold.headers.location)
  const subId = subUrl.split('/').pop()!
  const sub = core.billing.get('subscriptions', subId)
  t.match(sub, { customer_id: s.customer.id, state: 'synced', status: 'active' })
  t.ok(sub.paddle_id, 'made at Paddle')
  t.match((await get(op.cookie, subUrl)).body, /id="subscription-status">active</)

  // a card subscription: the page shows Paddle's checkout link
  const card = await post(op.cookie, '/admin/subscriptions', {
    customer_id: String(s.customer.id),
    address_id: String(s.address.id),
    price_id: String(s.price.id),
    quantity: '1',
    collection_mode: 'automatic',
  })
  t.equal(card.statusCode, 303)
  t.match(
    (await get(op.cookie, String(card.headers.location))).body,
    /id="checkout-url" href="http/,
  )

  // a quantity change, billed as Paddle prorates it
  const more = await post(op.cookie, `${subUrl}/action`, {
    action: 'change_items',
    price_id: String(s.price.id),
    quantity: '5',
    proration_billing_mode: 'prorated_immediately',
  })
  t.equal(more.statusCode, 303)
  t.match(
    core.db
      .prepare('SELECT price_id, quantity FROM subscription_items WHERE subscription_id = ?')
      .all(subId),
    [{ price_id: s.price.id, quantity: 5 }],
    'our items follow Paddle',
  )
  t.match(core.billing.get('subscriptions', subId), { state: 'synced', pending_change: null })

  // cancel at the period end: led by us, Paddle schedules it
  const cancel = await post(op.cookie, `${subUrl}/action`, {
    action: 'cancel',
    effective_from: 'next_billing_period',
  })
  t.equal(cancel.statusCode, 303)
  const after = core.billing.get('subscriptions', subId)
  t.match(after.scheduled_change, { action: 'cancel' }, 'scheduled at Paddle')
  t.match((await get(op.cookie, subUrl)).body, /Scheduled change<\/dt>\s*<dd>[^<]*cancel/)

  // a vault on it, a key shown once that works, then revoked
  const made = await post(op.cookie, '/admin/vaults', {
    customer_id: String(s.customer.id),
    subscription_id: subId,
    name: 'Acme vault',
  })
  t.equal(made.statusCode, 303)
  const vaultUrl = String(made.headers.location)
  const vaultId = vaultUrl.split('/').pop()!
  t.match((await get(op.cookie, vaultUrl)).body, /id="usage-devices">0 of/)
  const issued = await post(op.cookie, `${vaultUrl}/keys`, {}, vaultUrl)
  t.equal(issued.statusCode, 200)
  const key = /<code id="vault-key">([^<]+)<\/code>/.exec(issued.body)?.[1]
  t.ok(key, 'the key is on the page once')
  t.equal(core.credentials.authenticateVaultKey(key!).vaultId, vaultId)
  t.notOk((await get(op.cookie, vaultUrl)).body.includes(key!), 'never shown again')
  const keyId = core.credentials.listApiKeys(vaultId)[0]!.id
  const revoked = await post(op.cookie, `/admin/vault-keys/${keyId}/revoke`, {}, vaultUrl)
  t.equal(revoked.statusCode, 303)
  t.throws(() => core.credentials.authenticateVaultKey(key!), { code: 'CLA_ERR_API_KEY_REVOKED' })

  // edit: dual write to Paddle
  const edited = await post(op.cookie, `/admin/customers/${s.customer.id}/edit`, {
    name: 'Acme GmbH',
    email: 'acme@example.com',
  })
  t.equal(edited.statusCode, 303)
  t.match(core.billing.get('customers', String(s.customer.id)), {
    name: 'Acme GmbH',
    state: 'synced',
  })

  // every action is in the audit log under the admin
  const done = listEvents(core.db, { actor: op.humanId, outcome: 'ok' }).map((e) => e.reason)
  for (const a of [
    'subscription.create',
    'subscription.cancel',
    'subscription.change_items',
    'vault.create',
    'vault.key.create',
    'vault.key.revoke',
    'customer.update',
  ])
    t.ok(done.includes(a), `${a} audited`)
})

t.test('refusals: CSRF, a viewer, another MSP', async (t) => {
  const { core, app, s, other, post, get } = await setup(t)
  const viewer = seedAdmin(core.db, 'viewer', 'Vera', String(s.msp.id))
  t.notMatch(
    (await get(viewer.cookie, `/admin/customers/${s.customer.id}`)).body,
    /id="create-vault"/,
  )
  const forms: Array<[string, Record<string, string>]> = [
    ['/admin/vaults', { customer_id: String(s.customer.id), name: 'v' }],
    [`/admin/customers/${s.customer.id}/edit`, { name: 'x' }],
    [
      '/admin/subscriptions',
      {
        customer_id: String(s.customer.id),
        address_id: String(s.address.id),
        price_id: String(s.price.id),
        quantity: '1',
      },
    ],
  ]
  for (const [url, payload] of forms) {
    const res = await post(viewer.cookie, url, payload)
    t.equal(res.statusCode, 403, `viewer: ${url}`)
    const op = seedAdmin(core.db, 'operator', undefined, String(s.msp.id))
    const noCsrf = await app.inject({
      method: 'POST',
      url,
      headers: { cookie: op.cookie },
      payload,
    })
    t.equal(noCsrf.statusCode, 403, `no CSRF token: ${url}`)
  }
  t.equal(core.credentials.listVaults({ customerId: String(s.customer.id) }).length, 0)

  // MSP Two's admin: Acme is not theirs, on any page or form
  const two = seedAdmin(core.db, 'owner', 'Tess', String(other.id))
  t.equal((await get(two.cookie, `/admin/customers/${s.customer.id}`)).statusCode, 403)
  for (const [url, payload] of forms) {
    const res = await post(two.cookie, url, payload)
    t.equal(res.statusCode, 403, `other MSP: ${url}`)
    t.match(res.body, /outside your scope/)
  }
  // and an MSP admin cannot move its customer out to another MSP
  const own = seedAdmin(core.db, 'owner', 'Olaf', String(s.msp.id))
  const away = await post(own.cookie, `/admin/customers/${s.customer.id}/move`, {
    parent_id: String(other.id),
  })
  t.equal(away.statusCode, 403)
  t.equal(core.billing.get('customers', String(s.customer.id)).parent_id, s.msp.id)
})

t.test('the owner moves a customer to another MSP: its tree follows the new margin', async (t) => {
  const { core, s, other, post } = await setup(t)
  const owner = seedAdmin(core.db, 'owner', 'Ada')
  const moved = await post(owner.cookie, `/admin/customers/${s.customer.id}/move`, {
    parent_id: String(other.id),
  })
  t.equal(moved.statusCode, 303)
  t.match(core.billing.get('customers', String(s.customer.id)), {
    parent_id: other.id,
    state: 'synced',
  })
  t.ok(
    listEvents(core.db, { actor: owner.humanId, outcome: 'ok' }).some(
      (e) => e.reason === 'customer.move',
    ),
    'audited',
  )
})

t.test(
  'refunds and credits, discounts edited and archived, archive, filters, search',
  async (t) => {
    const { core, s, other, post, get } = await setup(t)
    const owner = seedAdmin(core.db, 'owner', 'Ada')
    const txn = await core.billing.create('transactions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      status: 'billed',
      items: [{ price_id: s.price.id, quantity: 2 }],
    })
    const txnUrl = `/admin/transactions/${txn.id}`
    t.match((await get(owner.cookie, txnUrl)).body, /id="no-adjustments"/)
    const partial = await post(owner.cookie, `${txnUrl}/adjustments`, {
      action: 'credit',
      amount: '300',
      reason: 'goodwill',
    })
    t.equal(partial.statusCode, 303)
    const full = await post(owner.cookie, `${txnUrl}/adjustments`, {
      action: 'refund',
      reason: 'unused',
    })
    t.equal(full.statusCode, 303)
    const adj = core.billing
      .list('adjustments', { customer_id: String(s.customer.id) })
      .filter((a) => a.transaction_id === txn.id)
    t.equal(adj.length, 2)
    t.ok(
      adj.every((a) => a.state === 'synced' && String(a.paddle_id).startsWith('adj_')),
      'made at Paddle',
    )
    t.match(
      adj.find((a) => a.action === 'credit'),
      { total: '300' },
    )
    const page = (await get(owner.cookie, txnUrl)).body
    t.match(page, /goodwill/)
    t.match(page, /unused/)
    // another MSP's admin: the transaction is out of reach
    const two = seedAdmin(core.db, 'owner', 'Tess', String(other.id))
    t.equal((await get(two.cookie, txnUrl)).statusCode, 403)
    t.equal(
      (await post(two.cookie, `${txnUrl}/adjustments`, { action: 'refund', reason: 'x' }))
        .statusCode,
      403,
    )

    // a discount edited, then archived (dual write); an MSP admin may not
    const d = String(s.discount.id)
    t.equal(
      (await post(two.cookie, `/admin/discounts/${d}/edit`, { description: 'x', amount: '90' }))
        .statusCode,
      403,
    )
    t.equal(
      (
        await post(owner.cookie, `/admin/discounts/${d}/edit`, {
          description: 'MSP One margin 2027',
          amount: '25',
        })
      ).statusCode,
      303,
    )
    t.match(core.billing.get('discounts', d), {
      description: 'MSP One margin 2027',
      amount: '25',
      state: 'synced',
    })
    t.equal((await post(owner.cookie, `/admin/discounts/${d}/archive`, {})).statusCode, 303)
    t.match(core.billing.get('discounts', d), { status: 'archived', state: 'synced' })
    t.match((await get(owner.cookie, '/admin/discounts?status=archived')).body, new RegExp(d))
    t.notMatch(
      (await get(owner.cookie, '/admin/discounts?status=active')).body,
      new RegExp(`<code>${d}</code>`),
    )

    // filters: by customer and status, kept by the pager
    const byCustomer = (await get(owner.cookie, `/admin/transactions?customer=${other.id}`)).body
    t.notMatch(byCustomer, new RegExp(String(txn.id)), 'another customer: none')
    t.match(
      (await get(owner.cookie, `/admin/transactions?customer=${s.customer.id}&status=billed`)).body,
      new RegExp(String(txn.id)),
    )
    await core.billing.create('transactions', {
      customer_id: s.customer.id,
      address_id: s.address.id,
      currency_code: 'EUR',
      status: 'billed',
      items: [{ price_id: s.price.id, quantity: 1 }],
    })
    const paged = (await get(owner.cookie, `/admin/transactions?status=billed&limit=1`)).body
    t.match(paged, /status=billed/, 'the pager keeps the filter')

    // search, then archive a customer
    const found = (await get(owner.cookie, '/admin/customers?q=acme')).body
    t.match(found, new RegExp(`id="search-hits"[\\s\\S]*${s.customer.id}`))
    t.match(
      (await get(two.cookie, '/admin/customers?q=acme')).body,
      /No customer matches/,
      'not across MSPs',
    )
    t.equal(
      (await post(owner.cookie, `/admin/customers/${s.customer.id}/archive`, {})).statusCode,
      303,
    )
    t.match(core.billing.get('customers', String(s.customer.id)), {
      status: 'archived',
      state: 'synced',
    })
    const done = listEvents(core.db, { actor: owner.humanId, outcome: 'ok' }).map((e) => e.reason)
    for (const a of [
      'transaction.credit',
      'transaction.refund',
      'discount.update',
      'discount.archive',
      'customer.archive',
    ])
      t.ok(done.includes(a), `${a} audited`)
  },
)
