// The round-trip against Paddle's real sandbox (https://sandbox-api.paddle.com), for a
// machine with internet: set CLAVITOR_PADDLE_SANDBOX_KEY (a pdl_sdbx_apikey_…) and run
//   npx tap test/lib/billing/sandbox.test.ts
// Without the key it is skipped, saying why. It creates real sandbox objects (archived at
// the end where Paddle allows it).
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Billing } from '../../../lib/billing/billing.js'
import { PaddleClient } from '../../../lib/billing/paddle-client.js'
import { openDb } from '../../../lib/db/open.js'

const key = process.env.CLAVITOR_PADDLE_SANDBOX_KEY
const url = process.env.CLAVITOR_PADDLE_SANDBOX_URL ?? 'https://sandbox-api.paddle.com'

if (!key) {
  const reason =
    'CLAVITOR_PADDLE_SANDBOX_KEY is not set: the Paddle sandbox suite needs a sandbox API key and internet'
  t.comment(`skipped: ${reason}`)
  t.plan(0, reason)
} else {
  t.test('every entity round-trips through the Paddle sandbox', { timeout: 180_000 }, async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'clavitor-sandbox-'))
    const db = openDb(join(dir, 'meta.db'))
    t.teardown(() => {
      db.close()
      rmSync(dir, { recursive: true, force: true })
    })
    const paddle = new PaddleClient({ baseUrl: url, apiKey: key, timeoutMs: 20_000 })
    const b = new Billing({ db, paddle })
    const run = randomBytes(4).toString('hex')

    const product = await b.create('products', {
      name: `Clavitor test ${run}`,
      tax_category: 'standard',
    })
    t.match(product, { state: 'synced', paddle_id: /^pro_/ }, product.last_error as string)
    const price = await b.create('prices', {
      product_id: product.id,
      description: 'monthly',
      unit_amount: '1200',
      currency_code: 'USD',
      billing_interval: 'month',
    })
    t.match(price, { state: 'synced', paddle_id: /^pri_/ }, price.last_error as string)
    const msp = await b.create('customers', { email: `msp-${run}@example.com`, name: 'MSP test' })
    t.match(msp, { state: 'synced', paddle_id: /^ctm_/ }, msp.last_error as string)
    const discount = await b.create('discounts', {
      description: `margin ${run}`,
      type: 'percentage',
      amount: '10',
      msp_id: msp.id,
    })
    t.match(discount, { state: 'synced', paddle_id: /^dsc_/ }, discount.last_error as string)
    const customer = await b.create('customers', {
      email: `cust-${run}@example.com`,
      parent_id: msp.id,
    })
    t.match(customer, { state: 'synced', level: 2 }, customer.last_error as string)
    const address = await b.create('addresses', {
      customer_id: customer.id,
      country_code: 'US',
      postal_code: '10001',
      region: 'NY',
    })
    t.match(address, { state: 'synced', paddle_id: /^add_/ }, address.last_error as string)
    const business = await b.create('businesses', {
      customer_id: customer.id,
      name: `Test Co ${run}`,
    })
    t.match(business, { state: 'synced', paddle_id: /^biz_/ }, business.last_error as string)
    const sub = await b.create('subscriptions', {
      customer_id: customer.id,
      address_id: address.id,
      currency_code: 'USD',
      items: [{ price_id: price.id }],
    })
    const origin = b.get('transactions', String(sub.origin_transaction_id))
    t.match(origin, { paddle_id: /^txn_/ }, origin.last_error as string)
    // Paddle makes the subscription asynchronously: poll (forced passes) until it is linked.
    for (let i = 0; i < 20 && b.get('subscriptions', sub.id).state !== 'synced'; i++) {
      await new Promise((r) => setTimeout(r, 3000))
      await b.retryOnce({ force: true })
    }
    t.match(b.get('subscriptions', sub.id), { state: 'synced', paddle_id: /^sub_/ })
    t.same(b.pending(), [], 'nothing left pending')

    await b.update('products', product.id, { status: 'archived' })
  })
}
