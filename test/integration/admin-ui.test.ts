// The admin UI in a real headless Chromium (playwright-core + Debian's chromium) with a
// virtual WebAuthn authenticator over CDP. The core serves on `localhost` (WebAuthn
// refuses a bare IP as the RP id); Billing talks to the fake Paddle over real HTTP.
// Screenshots land in test-output/admin-ui/.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { chromium, type Browser, type Page } from 'playwright-core'
import { openCore } from '../../lib/core.js'
import { listEvents, verifyChain } from '../../lib/audit/log.js'
import { buildCoreApp } from '../../server/app.js'
import { startFakePaddle } from '../../scripts/fake-paddle/server.js'

const CHROMIUM = '/usr/bin/chromium'
const OUT = join(process.cwd(), 'test-output', 'admin-ui')

if (!existsSync(CHROMIUM)) {
  t.test(
    'admin UI in Chromium',
    { skip: `needs ${CHROMIUM} (Debian package chromium; .ci/run installs it)` },
    async () => {},
  )
} else {
  process.env.CLAVITOR_PROTECTION = 'off'
  mkdirSync(OUT, { recursive: true })

  const dir = mkdtempSync(join(tmpdir(), 'clavitor-admin-ui-'))
  const paddle = await startFakePaddle({ host: '127.0.0.1', apiKey: 'pdl_test_key' })
  const core = await openCore({
    dataDir: dir,
    paddle: { apiUrl: paddle.url, apiKey: 'pdl_test_key' },
  })
  const setupUrls: string[] = []
  const app = await buildCoreApp({ core, admin: { onSetupUrl: (u) => setupUrls.push(u) } })
  await app.listen({ port: 0, host: 'localhost' })
  const addr = app.server.address()
  const base = `http://localhost:${addr && typeof addr === 'object' ? addr.port : 0}`

  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  })
  t.teardown(async () => {
    await browser.close()
    await app.close()
    await core.close()
    await paddle.close()
    spawnSync('chattr', ['-R', '-i', '-a', dir])
    rmSync(dir, { recursive: true, force: true })
  })

  const shot = (page: Page, name: string) =>
    page.screenshot({ path: join(OUT, `${name}.png`), fullPage: true })

  /** A browser context with its own virtual security key (a resident-key CTAP2 device). */
  const withKey = async () => {
    const context = await browser.newContext({ viewport: { width: 1200, height: 800 } })
    const page = await context.newPage()
    const cdp = await context.newCDPSession(page)
    await cdp.send('WebAuthn.enable')
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: {
        protocol: 'ctap2',
        transport: 'usb',
        hasResidentKey: true,
        hasUserVerification: true,
        isUserVerified: true,
        automaticPresenceSimulation: true,
      },
    })
    return { context, page, cdp, authenticatorId }
  }
  const { context, page, cdp, authenticatorId } = await withKey()
  const pageErrors: string[] = []
  page.on('pageerror', (e) => pageErrors.push(e.message))
  page.on('console', (m) => {
    // our own forged POSTs below answer 400/403 on purpose; anything else is a failure
    if (
      m.type() === 'error' &&
      !/Failed to load resource: the server responded with a status of 40[03]/.test(m.text())
    ) {
      pageErrors.push(m.text())
    }
  })

  await t.test('first start printed one setup URL on localhost', async (t) => {
    t.equal(setupUrls.length, 1)
    t.match(setupUrls[0], new RegExp(`^${base}/admin/setup\\?token=[A-Za-z0-9_-]{43}$`))
  })

  await t.test('an anonymous visit is sent to the login page', async (t) => {
    const anon = await browser.newContext()
    const p = await anon.newPage()
    await p.goto(`${base}/admin/customers`)
    t.equal(new URL(p.url()).pathname, '/admin/login')
    t.match(await p.textContent('h1'), 'Log in')
    await shot(p, '01-login-anonymous')
    await anon.close()
  })

  await t.test('enroll the first admin (owner) through the setup URL', async (t) => {
    await page.goto(setupUrls[0]!)
    await shot(page, '02-setup')
    await page.fill('#name', 'Ada Owner')
    await page.click('#go')
    await page.waitForURL(`${base}/admin`)
    t.match(await page.textContent('header .who'), /Ada Owner\s+owner/)
    const creds = await cdp.send('WebAuthn.getCredentials', { authenticatorId })
    t.equal(creds.credentials.length, 1, 'one resident credential on the virtual key')
    const cookies = await context.cookies()
    const session = cookies.find((c) => c.name === 'clavitor_admin')
    t.ok(session, 'session cookie set')
    t.match(session, { httpOnly: true, sameSite: 'Strict', path: '/admin' })
    await shot(page, '03-dashboard-after-enroll')

    // the setup URL is spent
    const again = await page.context().request.get(setupUrls[0]!)
    t.equal(again.status(), 403, 'the setup link works once')
  })

  await t.test('log out, then log in with the security key', async (t) => {
    await page.click('header button[type=submit]')
    await page.waitForURL(`${base}/admin/login`)
    t.notOk(
      (await context.cookies()).find((c) => c.name === 'clavitor_admin'),
      'session cookie cleared',
    )
    await page.click('#go')
    await page.waitForURL(`${base}/admin`)
    t.match(await page.textContent('header .who'), /Ada Owner/)
    t.match(await page.textContent('h1'), 'Dashboard')
  })

  let mspId = ''
  let customerId = ''
  let departmentId = ''
  await t.test('create an MSP, a customer under it and a department under that', async (t) => {
    await page.goto(`${base}/admin/customers`)
    await page.fill('#create-customer input[name=name]', 'Northwind MSP')
    await page.fill('#create-customer input[name=email]', 'ops@northwind.example')
    await page.click('#create-customer button[type=submit]')
    await page.waitForURL(/\/admin\/customers\/cus_/)
    mspId = page.url().split('/').pop()!
    t.match(await page.textContent('h1'), 'MSP: Northwind MSP')

    await page.fill('#create-customer input[name=name]', 'Contoso <Ltd>')
    await page.fill('#create-customer input[name=email]', 'it@contoso.example')
    await page.click('#create-customer button[type=submit]')
    await page.waitForURL(
      (u) => u.pathname.startsWith('/admin/customers/cus_') && !u.pathname.endsWith(mspId),
    )
    customerId = page.url().split('/').pop()!
    t.match(await page.textContent('h1'), 'customer: Contoso <Ltd>', 'the name is shown as text')

    await page.fill('#create-customer input[name=name]', 'Contoso Finance')
    await page.fill('#create-customer input[name=email]', 'finance@contoso.example')
    await page.click('#create-customer button[type=submit]')
    await page.waitForURL(
      (u) => u.pathname.startsWith('/admin/customers/cus_') && !u.pathname.endsWith(customerId),
    )
    departmentId = page.url().split('/').pop()!
    t.match(await page.textContent('h1'), 'department: Contoso Finance')
    t.equal(
      await page.locator('#create-customer').count(),
      0,
      'a department offers no "create child"',
    )
    t.match(await page.textContent('main'), 'A department has no children')
    await shot(page, '04-department')

    const rows = core.db
      .prepare(
        'SELECT id, parent_id, level, paddle_id, pending_since FROM customers ORDER BY level',
      )
      .all() as Array<Record<string, unknown>>
    t.match(rows, [
      { id: mspId, parent_id: null, level: 1, paddle_id: /^ctm_/, pending_since: null },
      { id: customerId, parent_id: mspId, level: 2, paddle_id: /^ctm_/ },
      { id: departmentId, parent_id: customerId, level: 3, paddle_id: /^ctm_/ },
    ])
    t.equal(
      paddle.countByCustomId('customers', departmentId),
      1,
      'the fake Paddle holds each one once',
    )
  })

  await t.test('a forged POST for a child of the department is refused', async (t) => {
    const csrf = await page.inputValue('input[name=_csrf] >> nth=0')
    const status = await page.evaluate(
      async ([parentId, csrf]) => {
        const res = await fetch('/admin/customers', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            parent_id: parentId,
            name: 'Sub-department',
            email: 'x@contoso.example',
            _csrf: csrf,
          }).toString(),
        })
        return res.status
      },
      [departmentId, csrf] as const,
    )
    t.equal(status, 400)
    t.equal(core.db.prepare('SELECT count(*) FROM customers').pluck().get(), 3, 'nothing created')
  })

  await t.test(
    'the tree shows MSP → customer → department; Paddle down shows "pending"',
    async (t) => {
      paddle.failNext({ kind: '5xx', count: Infinity, path: '/customers' })
      await page.goto(`${base}/admin/customers`)
      await page.fill('#create-customer input[name=name]', 'Pending MSP')
      await page.fill('#create-customer input[name=email]', 'p@pending.example')
      await page.click('#create-customer button[type=submit]')
      await page.waitForURL(/\/admin\/customers\/cus_/)
      t.match(await page.textContent('dl.facts'), 'pending')
      paddle.clearFailures()

      await page.goto(`${base}/admin/customers`)
      const nested = page.locator(
        'ul.tree > li.level-1 ul.tree > li.level-2 ul.tree > li.level-3 > a',
      )
      t.equal(await nested.textContent(), 'Contoso Finance')
      t.match(
        await page.locator('li.level-1', { hasText: 'Northwind MSP' }).first().textContent(),
        /Contoso <Ltd>/,
      )
      t.match(
        await page
          .locator('li.level-1', { hasText: 'Pending MSP' })
          .locator('.badge')
          .first()
          .textContent(),
        'pending',
      )
      await shot(page, '05-customers-tree')
    },
  )

  await t.test('the events page shows those actions, with the chain status', async (t) => {
    await page.goto(`${base}/admin/events?kind=admin.action`)
    const text = (await page.textContent('main'))!
    t.match(text, 'Audit chain verifies')
    t.match(text, /customer\.create/)
    t.match(text, /admin\.enroll/)
    t.match(text, /Ada Owner/, 'actors are named')
    t.match(text, /CLA_ERR_BILLING_HIERARCHY/, 'the refused forgery is there too')
    await shot(page, '06-events')
    const creates = listEvents(core.db, { kind: 'admin.action', reason: 'customer.create' })
    t.equal(creates.length, 4)
    t.ok(verifyChain(core.db).ok)
    // some store and POP history for the dashboard's charts
    for (let i = 0; i < 6; i++)
      await core.store.put('ab'.repeat(16 + i), Buffer.alloc(1000 * (i + 1), i))
    const now = Date.now() * 1000
    for (const pop of ['pop-ams', 'pop-sfo']) {
      core.db
        .prepare('INSERT INTO pops (id, name, created_at) VALUES (?, ?, ?)')
        .run(pop, pop.toUpperCase(), now)
      for (let i = 0; i < 12; i++) {
        core.db
          .prepare('INSERT INTO pop_lag_samples (pop_id, at, lag_us) VALUES (?, ?, ?)')
          .run(pop, now - (12 - i) * 3600e6, (pop === 'pop-ams' ? 60 : 300) * 1e6 * (1 + (i % 4)))
      }
    }
    await page.goto(`${base}/admin`)
    await shot(page, '07-dashboard')
    t.equal(
      await page.locator('figure.chart polyline').count(),
      3,
      'blob growth + one lag line per POP',
    )
    t.equal((await page.locator('svg').count()) >= 1, true, 'charts render')
  })

  await t.test(
    'an owner creates an enrollment link for a viewer, who cannot change anything',
    async (t) => {
      await page.goto(`${base}/admin/admins`)
      await page.selectOption('select[name=role]', 'viewer')
      await page.click('form.inline-form button[type=submit]')
      const url = (await page.textContent('#invite-url'))!.trim()
      t.match(url, `${base}/admin/setup?token=`)
      await shot(page, '08-admins-invite')

      const { context: vctx, page: vpage } = await withKey()
      await vpage.goto(url)
      await vpage.fill('#name', 'Vera Viewer')
      await vpage.click('#go')
      await vpage.waitForURL(`${base}/admin`)
      t.match(await vpage.textContent('header .who'), /Vera Viewer\s+viewer/)
      await vpage.goto(`${base}/admin/customers`)
      t.equal(await vpage.locator('#create-customer').count(), 0, 'no create form for a viewer')
      const vcsrf = await vpage.inputValue('input[name=_csrf] >> nth=0')
      const status = await vpage.evaluate(async (csrf) => {
        const res = await fetch('/admin/customers', {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({
            name: 'Viewer MSP',
            email: 'v@example.com',
            _csrf: csrf,
          }).toString(),
        })
        return res.status
      }, vcsrf)
      t.equal(status, 403)
      await vctx.close()
    },
  )

  await t.test(
    'an MSP admin enrolled with a scoped invite sells within the MSP and sees no other',
    async (t) => {
      // the owner invites an operator limited to Northwind MSP
      await page.goto(`${base}/admin/admins`)
      await page.selectOption('form.inline-form select[name=role]', 'operator')
      await page.fill('form.inline-form input[name=scope]', mspId)
      await page.click('form.inline-form button[type=submit]')
      t.match(await page.textContent('.invite'), /operator\s+of\s+cus_/)
      const url = (await page.textContent('#invite-url'))!.trim()

      const { context: mctx, page: mpage } = await withKey()
      mpage.on('pageerror', (e) => pageErrors.push(e.message))
      await mpage.goto(url)
      await mpage.fill('#name', 'Mia MSP')
      await mpage.click('#go')
      await mpage.waitForURL(`${base}/admin`)
      t.match(await mpage.textContent('header .who'), /Mia MSP\s+operator/)
      // log out and in again with the security key: the scope holds
      await mpage.click('header button[type=submit]')
      await mpage.waitForURL(`${base}/admin/login`)
      await mpage.click('#go')
      await mpage.waitForURL(`${base}/admin`)
      await shot(mpage, '09-msp-dashboard')
      t.equal(await mpage.locator('nav a[href="/admin/pops"]').count(), 0, 'no POPs page')

      // only its own MSP in the tree; the other MSP refused
      await mpage.goto(`${base}/admin/customers`)
      const tree = (await mpage.textContent('main'))!
      t.match(tree, /Northwind MSP/)
      t.notMatch(tree, /Pending MSP/, 'the other MSP is not listed')
      const pendingMsp = core.db
        .prepare("SELECT id FROM customers WHERE name = 'Pending MSP'")
        .pluck()
        .get() as string
      const refused = await mpage.goto(`${base}/admin/customers/${pendingMsp}`)
      t.equal(refused?.status(), 403, "the other MSP's page is refused")
      await shot(mpage, '10-msp-refused')

      // a new customer under its MSP
      await mpage.goto(`${base}/admin/customers/${mspId}`)
      await mpage.fill('#create-customer input[name=name]', 'Litware')
      await mpage.fill('#create-customer input[name=email]', 'it@litware.example')
      await mpage.click('#create-customer button[type=submit]')
      await mpage.waitForURL(
        (u) => u.pathname.startsWith('/admin/customers/cus_') && !u.pathname.endsWith(mspId),
      )
      const litware = mpage.url().split('/').pop()!
      t.match(await mpage.textContent('h1'), 'customer: Litware')

      // its billing address and the catalogue come from the host (CLI), as in production
      const product = await core.billing.create('products', { name: 'Vault', tax_category: 'saas' })
      await core.billing.create('prices', {
        product_id: product.id,
        description: 'Vault, monthly',
        unit_amount: '900',
        currency_code: 'EUR',
        billing_interval: 'month',
      })
      await core.billing.create('addresses', {
        customer_id: litware,
        country_code: 'NL',
        city: 'Delft',
      })

      // a card subscription: its checkout link
      await mpage.reload()
      await mpage.selectOption('#create-subscription select[name=collection_mode]', 'automatic')
      await mpage.click('#create-subscription button[type=submit]')
      await mpage.waitForURL(/\/admin\/subscriptions\/sbs_/)
      t.match(await mpage.getAttribute('#checkout-url', 'href'), /^https?:\/\//)
      await shot(mpage, '11-msp-subscription')

      // an invoice subscription, a vault on it, its key shown once
      await mpage.goto(`${base}/admin/customers/${litware}`)
      await mpage.click('#create-subscription button[type=submit]')
      await mpage.waitForURL(/\/admin\/subscriptions\/sbs_/)
      const subId = mpage.url().split('/').pop()!
      t.match(await mpage.textContent('#subscription-status'), 'active')
      await mpage.goto(`${base}/admin/customers/${litware}`)
      await mpage.fill('#create-vault input[name=name]', 'Litware vault')
      await mpage.selectOption('#create-vault select[name=subscription_id]', subId)
      await mpage.click('#create-vault button[type=submit]')
      await mpage.waitForURL(/\/admin\/vaults\/vlt_/)
      await mpage.click('#issue-key button[type=submit]')
      const key = (await mpage.textContent('#vault-key'))!.trim()
      t.match(key, /^clv_/)
      t.ok(
        core.credentials.authenticateVaultKey(key).vaultId,
        'the key works on the credentials API',
      )
      await shot(mpage, '12-msp-vault-key')

      // the subscriptions list holds Litware's, never the other MSPs'
      await mpage.goto(`${base}/admin/subscriptions`)
      t.match(await mpage.textContent('main'), subId)
      await mctx.close()
    },
  )

  await t.test('every page renders for the owner (screenshots)', async (t) => {
    const pages: Array<[string, string]> = [
      ['/admin/subscriptions', '13-subscriptions'],
      ['/admin/transactions', '14-transactions'],
      ['/admin/vaults', '15-vaults'],
      ['/admin/discounts', '16-discounts'],
      ['/admin/pops', '17-pops'],
      ['/admin/admins', '18-admins'],
      ['/admin/tokens', '19-tokens'],
      ['/admin/customers?q=contoso', '20-customer-search'],
    ]
    for (const [path, name] of pages) {
      const res = await page.goto(`${base}${path}`)
      t.equal(res?.status(), 200, path)
      await shot(page, name)
    }
    t.match(await page.textContent('#search-hits'), /Contoso/)
    // an API token made on its page works on the JSON admin API
    await page.goto(`${base}/admin/tokens`)
    await page.fill('#create-token input[name=name]', 'ci')
    await page.click('#create-token button[type=submit]')
    const token = (await page.textContent('#api-token'))!.trim()
    const me = await page.context().request.get(`${base}/admin/api/v1/me`, {
      headers: { authorization: `Bearer ${token}` },
    })
    t.equal(me.status(), 200)
    t.match(await me.json(), { name: 'Ada Owner', role: 'owner', scope: null })
  })

  await t.test('no script errors (CSP allows our own scripts)', async (t) => {
    t.same(pageErrors, [])
  })
}
