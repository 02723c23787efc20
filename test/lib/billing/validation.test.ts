// Bad input to the layer gets a typed error and writes nothing (here or at Paddle):
// missing fields, wrong money format, a level-4 department, a cycle, unknown fields.
import t from 'tap'
import { billingRig, seed } from '../../fixtures/billing.js'

const TABLES = [
  'products',
  'prices',
  'customers',
  'discounts',
  'addresses',
  'businesses',
  'transactions',
  'subscriptions',
  'subscription_items',
]

t.test('bad input: typed error, nothing written', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const dept = await b.create('customers', { email: 'dept@example.com', parent_id: s.customer.id })
  t.equal(dept.level, 3, 'department')

  const counts = () =>
    Object.fromEntries(
      TABLES.map((tb) => [
        tb,
        (rig.db.prepare(`SELECT count(*) AS n FROM ${tb}`).get() as { n: number }).n,
      ]),
    )
  const before = counts()
  const requestsBefore = rig.fake.state.requests.length

  const cases: Array<[string, string, unknown, string, RegExp?]> = [
    ['missing email', 'customers', { name: 'x' }, 'CLA_ERR_INVALID_INPUT', /email/],
    ['malformed email', 'customers', { email: 'nope' }, 'CLA_ERR_INVALID_INPUT'],
    ['unknown field', 'products', { name: 'x', colour: 'red' }, 'CLA_ERR_INVALID_INPUT'],
    [
      'money as a number',
      'prices',
      { product_id: s.product.id, description: 'd', unit_amount: 1200, currency_code: 'EUR' },
      'CLA_ERR_INVALID_INPUT',
      /unit_amount/,
    ],
    [
      'money with decimals',
      'prices',
      { product_id: s.product.id, description: 'd', unit_amount: '12.00', currency_code: 'EUR' },
      'CLA_ERR_INVALID_INPUT',
      /unit_amount/,
    ],
    [
      'negative money',
      'prices',
      { product_id: s.product.id, description: 'd', unit_amount: '-5', currency_code: 'EUR' },
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'lowercase currency',
      'prices',
      { product_id: s.product.id, description: 'd', unit_amount: '5', currency_code: 'eur' },
      'CLA_ERR_INVALID_INPUT',
    ],
    [
      'unknown product',
      'prices',
      { product_id: 'prd_nope', description: 'd', unit_amount: '5', currency_code: 'EUR' },
      'CLA_ERR_INVALID_INPUT',
      /product_id/,
    ],
    [
      'level-4 department',
      'customers',
      { email: 'l4@example.com', parent_id: dept.id },
      'CLA_ERR_BILLING_HIERARCHY',
      /department/,
    ],
    [
      'wrong level given',
      'customers',
      { email: 'l@example.com', parent_id: s.msp.id, level: 3 },
      'CLA_ERR_BILLING_HIERARCHY',
      /level must be 2/,
    ],
    [
      'level 2 without parent',
      'customers',
      { email: 'l@example.com', level: 2 },
      'CLA_ERR_BILLING_HIERARCHY',
    ],
    [
      'missing parent',
      'customers',
      { email: 'l@example.com', parent_id: 'cus_nope' },
      'CLA_ERR_BILLING_HIERARCHY',
      /does not exist/,
    ],
    [
      'percentage over 100',
      'discounts',
      { description: 'd', type: 'percentage', amount: '150' },
      'CLA_ERR_INVALID_INPUT',
      /0.01/,
    ],
    [
      'flat with decimals',
      'discounts',
      { description: 'd', type: 'flat', amount: '1.50', currency_code: 'EUR' },
      'CLA_ERR_INVALID_INPUT',
      /minor units/,
    ],
    [
      'flat without currency',
      'discounts',
      { description: 'd', type: 'flat', amount: '150' },
      'CLA_ERR_INVALID_INPUT',
      /currency_code/,
    ],
    [
      'second discount for one MSP',
      'discounts',
      { description: 'd', type: 'percentage', amount: '5', msp_id: s.msp.id },
      'CLA_ERR_BILLING_CONFLICT',
    ],
    [
      'discount for a non-MSP',
      'discounts',
      { description: 'd', type: 'percentage', amount: '5', msp_id: s.customer.id },
      'CLA_ERR_BILLING_HIERARCHY',
    ],
    ['empty items', 'transactions', { currency_code: 'EUR', items: [] }, 'CLA_ERR_INVALID_INPUT'],
    [
      'billed without address',
      'transactions',
      {
        currency_code: 'EUR',
        customer_id: s.customer.id,
        status: 'billed',
        items: [{ price_id: s.price.id }],
      },
      'CLA_ERR_INVALID_INPUT',
      /address_id/,
    ],
    [
      'subscription without recurring price',
      'subscriptions',
      {
        customer_id: s.customer.id,
        address_id: s.address.id,
        currency_code: 'EUR',
        items: [{ price_id: 'prc_nope' }],
      },
      'CLA_ERR_INVALID_INPUT',
    ],
    ['unknown entity', 'widgets', {}, 'CLA_ERR_INVALID_INPUT', /unknown billing entity/],
  ]
  for (const [name, entity, input, code, msg] of cases) {
    const err = await b.create(entity, input).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.match(err, { name: 'ClavitorError', code }, name)
    if (msg) t.match((err as Error)?.message, msg, `${name}: message says what to fix`)
  }

  // updates: a cycle, a level change, moving a customer under a department
  const upd: Array<[string, string, string, unknown, string, RegExp?]> = [
    [
      'cycle (own parent)',
      'customers',
      s.customer.id,
      { parent_id: s.customer.id },
      'CLA_ERR_BILLING_HIERARCHY',
      /cycle/,
    ],
    [
      'cycle (under own child)',
      'customers',
      s.customer.id,
      { parent_id: dept.id },
      'CLA_ERR_BILLING_HIERARCHY',
    ],
    [
      'MSP under its own department',
      'customers',
      s.msp.id,
      { parent_id: dept.id },
      'CLA_ERR_BILLING_HIERARCHY',
    ],
    ['empty patch', 'products', s.product.id, {}, 'CLA_ERR_INVALID_INPUT'],
    ['missing row', 'products', 'prd_nope', { name: 'x' }, 'CLA_ERR_NOT_FOUND'],
    [
      'money format on update',
      'prices',
      s.price.id,
      { unit_amount: '1,200' },
      'CLA_ERR_INVALID_INPUT',
    ],
  ]
  for (const [name, entity, id, patch, code, msg] of upd) {
    const err = await b.update(entity, id, patch).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.match(err, { code }, name)
    if (msg) t.match((err as Error)?.message, msg, `${name}: message`)
  }

  t.same(counts(), before, 'no row written or changed in count')
  t.equal(rig.fake.state.requests.length, requestsBefore, 'nothing sent to Paddle')
  t.equal(b.get('customers', s.customer.id).parent_id, s.msp.id, 'hierarchy unchanged')
  t.same(b.pending(), [])
})

t.test('the schema enforces the hierarchy too (triggers), and a legal move works', async (t) => {
  const rig = await billingRig()
  t.teardown(rig.close)
  const b = rig.billing
  const s = await seed(b)
  const msp2 = await b.create('customers', { email: 'msp2@example.com' })
  const ins = rig.db.prepare(
    'INSERT INTO customers (id, parent_id, level, email, created_at, updated_at) VALUES (?, ?, ?, ?, 0, 0)',
  )
  t.throws(
    () => ins.run('cus_x', s.customer.id, 2, 'x@example.com'),
    /level must be parent level \+ 1/,
  )
  t.throws(() => ins.run('cus_y', null, 2, 'y@example.com'), /CHECK constraint/)
  t.throws(
    () => rig.db.prepare('UPDATE customers SET level = 3 WHERE id = ?').run(s.customer.id),
    /level cannot change/,
  )
  const moved = await b.update('customers', s.customer.id, { parent_id: msp2.id })
  t.equal(moved.parent_id, msp2.id, 'a customer can move to another MSP')
  t.equal(moved.level, 2)
  t.equal(moved.state, 'synced')
})
