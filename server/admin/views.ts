// The admin pages: functions from data to HTML. Every value goes through `html`, which
// escapes by default; nothing here reads the database or decides anything.
import type { AdminRow, AdminSession } from '../../lib/admin/admin.js'
import type { ApiTokenInfo } from '../../lib/admin/admin.js'
import type { CustomerView, Dashboard, SubscriptionView, VaultView } from '../../lib/admin/desk.js'
import type { Page, PopStateRow } from '../../lib/admin/read.js'
import type { CustomerNode, PublicRow } from '../../lib/billing/billing.js'
import type { EventRow, VerifyResult } from '../../lib/audit/log.js'
import { can, ROLES } from '../../lib/admin/roles.js'
import { PRORATION_MODES } from '../../lib/billing/subscription-lifecycle.js'
import { lineChart } from './charts.js'
import { html, type SafeHtml } from './html.js'

export interface PageCtx {
  session: AdminSession
  csrf: string
  /** Path of the current page, for the nav highlight. */
  path: string
  flash?: { kind: 'ok' | 'error'; text: string }
}

const NAV: Array<[string, string]> = [
  ['/admin', 'Dashboard'],
  ['/admin/customers', 'Customers'],
  ['/admin/subscriptions', 'Subscriptions'],
  ['/admin/transactions', 'Transactions'],
  ['/admin/vaults', 'Vaults'],
  ['/admin/discounts', 'Discounts'],
  ['/admin/events', 'Events'],
  ['/admin/pops', 'POPs'],
  ['/admin/admins', 'Admins'],
  ['/admin/tokens', 'API tokens'],
]

/** Pages of the whole installation (lib/admin/desk.ts refuses them to a scoped admin). */
const INSTALLATION_ONLY = new Set(['/admin/events', '/admin/pops'])

function head(title: string, scripts: string[] = []): SafeHtml {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${title} · Clavitor admin</title>
        <link rel="stylesheet" href="/admin/assets/admin.css" />
        ${scripts.map((s) => html`<script src="${s}" defer></script>`)}
      </head>
    </html>`
}

export function layout(ctx: PageCtx, title: string, body: SafeHtml): string {
  const active = (href: string) =>
    href === '/admin' ? ctx.path === '/admin' : ctx.path.startsWith(href)
  return html`${head(title)}
<body>
<header>
  <a class="brand" href="/admin">Clavitor admin</a>
  <nav>${NAV.filter(([href]) => ctx.session.scope === null || !INSTALLATION_ONLY.has(href)).map(([href, label]) => html`<a href="${href}" class="${active(href) ? 'active' : ''}">${label}</a>`)}</nav>
  <form method="post" action="/admin/logout" class="logout">
    <span class="who">${ctx.session.name} <span class="role">${ctx.session.role}</span>${ctx.session.scope ? html` <span class="scope">of <code>${ctx.session.scope}</code></span>` : ''}</span>
    <input type="hidden" name="_csrf" value="${ctx.csrf}">
    <button type="submit">Log out</button>
  </form>
</header>
<main>
<h1>${title}</h1>
${ctx.flash ? html`<p class="flash ${ctx.flash.kind}">${ctx.flash.text}</p>` : ''}
${body}
</main>
</body>
</html>`.value
}

/** Login, setup and error pages: no nav, no session. */
export function bare(title: string, body: SafeHtml, scripts: string[] = []): string {
  return html`${head(title, scripts)}
<body class="bare">
<main>
<h1>${title}</h1>
${body}
</main>
</body>
</html>`.value
}

const fmtTime = (us: number | null | undefined) =>
  us ? new Date(us / 1000).toISOString().replace('T', ' ').slice(0, 19) : ''
const fmtBytes = (n: number) =>
  n < 1024
    ? `${n} B`
    : n < 1024 ** 2
      ? `${(n / 1024).toFixed(1)} KiB`
      : n < 1024 ** 3
        ? `${(n / 1024 ** 2).toFixed(1)} MiB`
        : `${(n / 1024 ** 3).toFixed(2)} GiB`
const fmtLag = (us: number | null | undefined) => {
  if (us === null || us === undefined) return '—'
  const s = us / 1e6
  return s < 120
    ? `${s.toFixed(0)} s`
    : s < 7200
      ? `${(s / 60).toFixed(0)} min`
      : `${(s / 3600).toFixed(1)} h`
}
const money = (minor: string, currency: string) => {
  const neg = minor.startsWith('-')
  const digits = (neg ? minor.slice(1) : minor).padStart(3, '0')
  return `${neg ? '-' : ''}${digits.slice(0, -2)}.${digits.slice(-2)} ${currency}`
}

/** "pending" / "failed" / "synced" for a dual-written row. */
export function syncBadge(r: {
  state?: unknown
  pending?: unknown
  failed?: unknown
  pending_since?: unknown
  failed_at?: unknown
  last_error?: unknown
}): SafeHtml {
  const failed = r.state === 'failed' || r.failed === true || !!r.failed_at
  const pending = !failed && (r.state === 'pending' || r.pending === true || !!r.pending_since)
  const why = r.last_error ? String(r.last_error) : ''
  if (failed) return html`<span class="badge failed" title="${why}">failed</span>`
  if (pending)
    return html`<span class="badge pending" title="${why || 'waiting for Paddle'}">pending</span>`
  return html`<span class="badge synced">synced</span>`
}

/** The filters a list page was asked with (kept by its pager and shown in its form). */
export interface ListFilter {
  status?: string
  customer?: string
  discount?: string
}

function filterParams(f: ListFilter): Record<string, string> {
  return Object.fromEntries(
    Object.entries(f).filter(([, v]) => typeof v === 'string' && v),
  ) as Record<string, string>
}

/** A GET form filtering a list by status (when the list has one) and customer id. */
function filterForm(path: string, f: ListFilter, statuses?: readonly string[]): SafeHtml {
  return html`<form method="get" action="${path}" class="inline-form filters" id="filters">
    ${
      statuses
        ? html`<label
            >Status
            <select name="status">
              <option value="">any</option>
              ${statuses.map((st) => html`<option value="${st}" ${st === f.status ? 'selected' : ''}>${st}</option>`)}
            </select></label
          >`
        : ''
    }
    <label>Customer id <input name="customer" value="${f.customer ?? ''}" maxlength="200" /></label>
    <button type="submit">Filter</button>
  </form>`
}

function pager(path: string, page: Page<unknown>, extra: Record<string, string> = {}): SafeHtml {
  const q = (offset: number) => {
    const sp = new URLSearchParams({ ...extra, limit: String(page.limit), offset: String(offset) })
    return `${path}?${sp.toString()}`
  }
  return html`<p class="pager">
    ${page.offset > 0 ? html`<a href="${q(Math.max(0, page.offset - page.limit))}">← Previous</a>` : ''}
    <span>rows ${page.rows.length ? page.offset + 1 : 0}–${page.offset + page.rows.length}</span>
    ${page.more ? html`<a href="${q(page.offset + page.limit)}">Next →</a>` : ''}
  </p>`
}

function table(
  cols: Array<[string, (r: Record<string, unknown>) => unknown]>,
  rows: Array<Record<string, unknown>>,
): SafeHtml {
  if (rows.length === 0) return html`<p class="muted">Nothing here yet.</p>`
  return html`<table>
    <thead>
      <tr>
        ${cols.map(([h]) => html`<th>${h}</th>`)}
      </tr>
    </thead>
    <tbody>
      ${rows.map(
        (r) =>
          html`<tr>
            ${cols.map(([, f]) => html`<td>${f(r)}</td>`)}
          </tr>`,
      )}
    </tbody>
  </table>`
}

// --- pages ------------------------------------------------------------------------------

export function dashboardPage(ctx: PageCtx, dash: Dashboard): string {
  const f = dash.facts
  const d = dash.installation
  if (!d) {
    // a scoped admin: the counts of their subtree, nothing of the installation
    return layout(
      ctx,
      'Dashboard',
      html`<section class="cards">
        ${card('MSPs', f.customers.msp, `${f.customers.customer} customers · ${f.customers.department} departments`)}
        ${card('Subscriptions', f.subscriptions.total, `${f.subscriptions.active} active`)}
        ${card('Vaults', f.vaults, `${f.credentials} credentials`)} ${card('Admins', f.admins)}
      </section>`,
    )
  }
  const pendingTotal = d.pending.filter((p) => p.state === 'pending').length
  const failedTotal = d.pending.filter((p) => p.state === 'failed').length
  const byEntity = new Map<string, { table: string; pending: number; failed: number }>()
  for (const p of d.pending) {
    const e = byEntity.get(p.entity) ?? { table: p.entity, pending: 0, failed: 0 }
    e[p.state]++
    byEntity.set(p.entity, e)
  }
  return layout(
    ctx,
    'Dashboard',
    html`<section class="cards">
        ${card('MSPs', f.customers.msp, `${f.customers.customer} customers · ${f.customers.department} departments${f.customers.unplaced ? ` · ${f.customers.unplaced} unplaced` : ''}`)}
        ${card('Subscriptions', f.subscriptions.total, `${f.subscriptions.active} active`)}
        ${card('Vaults', f.vaults, `${f.credentials} credentials`)}
        ${card('Blobs', f.blobs?.count, fmtBytes(f.blobs?.bytes ?? 0))} ${card('POPs', f.pops)}
        ${card('Pending at Paddle', pendingTotal, failedTotal ? `${failedTotal} failed` : 'none failed')}
        ${card('Audit events', f.events)} ${card('Admins', f.admins)}
      </section>
      <section class="charts">
        ${lineChart('Blob growth (count)', [{ label: 'blobs', points: d.growth.map((g) => ({ x: g.at, y: g.count })) }], (y) => String(Math.round(y)))}
        ${lineChart(
          'POP lag over time',
          d.lag.map((s) => ({
            label: s.popId,
            points: s.points.map((p) => ({ x: p.at, y: p.lagUs })),
          })),
          (y) => fmtLag(y),
        )}
      </section>
      <h2>Revenue by discount</h2>
      ${table(
        [
          [
            'Discount',
            (r) => (r.discount_id ? html`<code>${r.discount_id}</code>` : 'no discount'),
          ],
          [
            'MSP',
            (r) =>
              r.msp_id ? html`<a href="/admin/customers/${String(r.msp_id)}">${r.msp_id}</a>` : '',
          ],
          ['Transactions', (r) => r.transactions],
          ['Billed', (r) => money(String(r.gross), String(r.currency_code))],
          ['Refunds and credits', (r) => money(String(r.adjustments), String(r.currency_code))],
          ['Revenue (net)', (r) => money(String(r.revenue), String(r.currency_code))],
        ],
        d.revenue as unknown as Array<Record<string, unknown>>,
      )}
      <h2>POP lag</h2>
      ${popTable(d.pops)}
      <h2>Pending Paddle writes</h2>
      ${table(
        [
          ['Table', (r) => r.table],
          ['Pending', (r) => r.pending],
          ['Failed', (r) => r.failed],
        ],
        [...byEntity.values()] as unknown as Array<Record<string, unknown>>,
      )}`,
  )
}

const card = (label: string, value: unknown, sub?: unknown) =>
  html`<div class="card">
    <div class="value">${value}</div>
    <div class="label">${label}</div>
    ${sub ? html`<div class="sub">${sub}</div>` : ''}
  </div>`

function popTable(pops: PopStateRow[]): SafeHtml {
  return table(
    [
      ['POP', (r) => html`${r.id}${r.name ? html` <span class="muted">${r.name}</span>` : ''}`],
      [
        'Lag',
        // a POP that reported without a cursor holds nothing yet: its lag is unknown
        (r) =>
          r.lag_us === null && r.updated_at && !r.cursor
            ? 'no blobs yet'
            : fmtLag(r.lag_us as number | null),
      ],
      ['Blobs', (r) => r.blobs ?? '—'],
      ['Last success', (r) => fmtTime(r.last_success_at as number | null)],
      [
        'Last error',
        // last_error is cleared by a clean run; last_error_at stays as when it last failed
        (r) =>
          r.last_error
            ? html`<span class="error">${r.last_error}</span> ${fmtTime(r.last_error_at as number)}`
            : r.last_error_at
              ? html`<span class="muted"
                  >none (last failed ${fmtTime(r.last_error_at as number)})</span
                >`
              : '',
      ],
      ['Cursor', (r) => html`<code>${r.cursor ?? ''}</code>`],
      ['State', (r) => (r.removed_at ? 'removed' : r.updated_at ? 'reporting' : 'never reported')],
    ],
    pops as unknown as Array<Record<string, unknown>>,
  )
}

export function popsPage(
  ctx: PageCtx,
  pops: PopStateRow[],
  enrolled?: { id: string; rsyncUser: string; rsyncPassword: string },
): string {
  const change = can(ctx.session.role, 'change')
  const act = (id: string, path: string, label: string) =>
    html`<form method="post" action="/admin/pops/${id}/${path}" class="row-action">
      <input type="hidden" name="_csrf" value="${ctx.csrf}" />
      <button type="submit" class="danger">${label}</button>
    </form>`
  return layout(
    ctx,
    'POPs',
    html`${
      enrolled
        ? html`<div class="invite">
            <p>
              POP <b>${enrolled.id}</b> enrolled. Its rsync daemon account (shown once; put the
              password in the POP's <code>rsync.password</code> file):
            </p>
            <p>
              <code id="rsync-user">${enrolled.rsyncUser}</code>
              <code id="rsync-password">${enrolled.rsyncPassword}</code>
            </p>
          </div>`
        : ''
    }
    ${popTable(pops)}
    ${
      change
        ? html`<h2>Stop trusting a POP</h2>
            <p class="muted">
              Remove ends its registry entry, refresh tokens and rsync password at once; revoke also
              puts its certificates on the CRL.
            </p>
            ${table(
              [
                ['POP', (r) => r.id],
                [
                  '',
                  (r) =>
                    r.removed_at
                      ? 'removed'
                      : html`${act(String(r.id), 'remove', 'Remove')}
                        ${act(String(r.id), 'revoke', 'Revoke certificates')}`,
                ],
              ],
              pops as unknown as Array<Record<string, unknown>>,
            )}
            <form method="post" action="/admin/pops" class="inline-form" id="enrol-pop">
              <h2>Enrol a POP</h2>
              <input type="hidden" name="_csrf" value="${ctx.csrf}" />
              <label>Id <input name="id" required pattern="[a-z0-9-]{1,63}" /></label>
              <label>Name <input name="name" maxlength="200" /></label>
              <label
                >Allowed addresses (CIDR, comma-separated) <input name="allow" required
              /></label>
              <label
                >Certificate (PEM, from <code>clavitor ca issue-pop</code>)
                <textarea name="cert" required rows="6"></textarea>
              </label>
              <button type="submit">Enrol</button>
            </form>`
        : ''
    }`,
  )
}

const levelName = (level: unknown) =>
  level === 1
    ? 'MSP'
    : level === 2
      ? 'customer'
      : level === 3
        ? 'department'
        : level === 0
          ? 'unplaced'
          : '?'
const CHILD = { 1: 'customer', 2: 'department' } as const

function treeList(nodes: CustomerNode[]): SafeHtml {
  if (nodes.length === 0) return html``
  return html`<ul class="tree">
    ${nodes.map(
      (n) =>
        html`<li class="level-${n.level}">
          <a href="/admin/customers/${n.id}">${n.name ?? n.email}</a>
          <span class="kind">${levelName(n.level)}</span> ${syncBadge(n)} ${treeList(n.children)}
        </li>`,
    )}
  </ul>`
}

function customerForm(ctx: PageCtx, parent: { id: string; level: 1 | 2 } | null): SafeHtml {
  const what = parent ? CHILD[parent.level] : 'MSP'
  return html`<form
    method="post"
    action="/admin/customers"
    class="inline-form"
    id="create-customer"
  >
    <h2>Create ${what === 'MSP' ? 'an MSP' : `a ${what}`}</h2>
    <input type="hidden" name="_csrf" value="${ctx.csrf}" />
    ${parent ? html`<input type="hidden" name="parent_id" value="${parent.id}" />` : ''}
    <label>Name <input name="name" required maxlength="200" /></label>
    <label>Email <input name="email" type="email" required maxlength="254" /></label>
    <button type="submit">Create ${what}</button>
  </form>`
}

export function customersPage(
  ctx: PageCtx,
  tree: CustomerNode[],
  search?: { q: string; hits: PublicRow[] },
): string {
  return layout(
    ctx,
    'Customers',
    html`<form method="get" action="/admin/customers" class="inline-form filters" id="search">
        <label
          >Search
          <input
            name="q"
            value="${search?.q ?? ''}"
            maxlength="200"
            placeholder="name, email or id"
        /></label>
        <button type="submit">Search</button>
      </form>
      ${
        search
          ? html`<h2>Matches</h2>
              ${
                search.hits.length
                  ? html`<ul id="search-hits">
                      ${search.hits.map((h) => html`<li><a href="/admin/customers/${h.id}">${h.name ?? h.email}</a> <span class="kind">${levelName(h.level)}</span> <code>${h.id}</code></li>`)}
                    </ul>`
                  : html`<p class="muted">No customer matches.</p>`
              }`
          : ''
      }
      ${tree.length ? treeList(tree) : html`<p class="muted">No customers yet.</p>`}
      ${can(ctx.session.role, 'change') && ctx.session.scope === null ? customerForm(ctx, null) : ''}`,
  )
}

function marginSection(
  ctx: PageCtx,
  mspId: string,
  d: Record<string, unknown> | undefined,
): SafeHtml {
  if (d) {
    return html`<h2>MSP margin</h2>
      <p id="msp-margin">
        ${d.description}:
        <b
          >${d.type === 'percentage' ? `${String(d.amount)} %` : `${String(d.amount)} ${String(d.currency_code ?? '')}`}</b
        >
        ${syncBadge(d)} <code>${d.id}</code>
      </p>`
  }
  // margins are the installation's prices to its MSPs: set by installation-wide admins
  if (!can(ctx.session.role, 'change') || ctx.session.scope !== null)
    return html`<h2>MSP margin</h2>
      <p class="muted">None set.</p>`
  return html`<form method="post" action="/admin/discounts" class="inline-form" id="create-margin">
    <h2>Set the MSP margin</h2>
    <input type="hidden" name="_csrf" value="${ctx.csrf}" />
    <input type="hidden" name="msp_id" value="${mspId}" />
    <label>Description <input name="description" required maxlength="200" /></label>
    <label
      >Percentage
      <input name="percentage" required pattern="[0-9]+([.][0-9]{1,2})?" inputmode="decimal"
    /></label>
    <button type="submit">Set margin</button>
  </form>`
}

export function customerPage(ctx: PageCtx, view: CustomerView): string {
  const { customer: c, ancestors, children, margin: discount } = view
  const level = Number(c.level)
  const crumbs = html`<p class="crumbs">
    <a href="/admin/customers">Customers</a>${ancestors.map(
      (a) => html` › <a href="/admin/customers/${a.id}">${a.name ?? a.email}</a>`,
    )}
    › ${c.name ?? c.email}
  </p>`
  const offerChild = (level === 1 || level === 2) && can(ctx.session.role, 'change')
  return layout(
    ctx,
    `${levelName(level)}: ${String(c.name ?? c.email)}`,
    html`${crumbs}
      <dl class="facts">
        <dt>Id</dt>
        <dd><code>${c.id}</code></dd>
        <dt>Paddle id</dt>
        <dd>
          <code>${c.paddle_id ?? '—'}</code
          >${c.bill_to_parent ? ' (billed through its parent)' : ''}
        </dd>
        <dt>Level</dt>
        <dd>${levelName(level)}</dd>
        <dt>Email</dt>
        <dd>${c.email}</dd>
        <dt>Status</dt>
        <dd>${c.status}</dd>
        <dt>Paddle</dt>
        <dd>
          ${syncBadge(c)} ${c.last_error ? html`<span class="error">${c.last_error}</span>` : ''}
        </dd>
      </dl>
      ${
        level === 0
          ? html`<p class="muted" id="unplaced">
              Made at Paddle and not filed yet: not an MSP, no margin, no children. File it under
              its parent (or at the top, as an MSP) with
              <code>clavitor billing update customers ${c.id} --json '{"parent_id": …}'</code>.
            </p>`
          : level < 3
            ? html`<h2>${level === 1 ? 'Customers' : 'Departments'}</h2>
                ${children.length ? treeList(children) : html`<p class="muted">None yet.</p>`}`
            : html`<p class="muted">A department has no children.</p>`
      }
      ${level === 1 ? marginSection(ctx, c.id, discount) : ''}
      ${offerChild ? customerForm(ctx, { id: c.id, level: level as 1 | 2 }) : ''}
      ${level > 0 ? customerSales(ctx, view) : ''}
      ${level > 0 && can(ctx.session.role, 'change') ? customerEditForms(ctx, c) : ''}`,
  )
}

/** A customer's subscriptions and vaults, with the forms that make new ones. */
function customerSales(ctx: PageCtx, v: CustomerView): SafeHtml {
  const c = v.customer
  const change = can(ctx.session.role, 'change')
  return html`<h2>Subscriptions</h2>
    ${
      v.subscriptions.length
        ? table(
            [
              [
                'Id',
                (r) =>
                  html`<a href="/admin/subscriptions/${String(r.id)}"><code>${r.id}</code></a>`,
              ],
              ['Status', (r) => r.status],
              ['Collection', (r) => (r.collection_mode === 'automatic' ? 'card' : 'invoice')],
              ['Paddle', (r) => syncBadge(r)],
            ],
            v.subscriptions as Array<Record<string, unknown>>,
          )
        : html`<p class="muted">None yet.</p>`
    }
    ${
      change
        ? v.addresses.length && v.prices.length
          ? html`<form
              method="post"
              action="/admin/subscriptions"
              class="inline-form"
              id="create-subscription"
            >
              <h2>New subscription</h2>
              <input type="hidden" name="_csrf" value="${ctx.csrf}" />
              <input type="hidden" name="customer_id" value="${c.id}" />
              <label
                >Address
                <select name="address_id">
                  ${v.addresses.map((a) => html`<option value="${String(a.id)}">${a.description ?? a.city ?? a.id} (${a.country_code})</option>`)}
                </select></label
              >
              <label
                >Price
                <select name="price_id">
                  ${v.prices.map((p) => html`<option value="${String(p.id)}">${p.name ?? p.description ?? p.id}: ${money(String(p.unit_amount), String(p.currency_code))} / ${p.billing_interval}</option>`)}
                </select></label
              >
              <label
                >Quantity
                <input name="quantity" type="number" min="1" max="1000" value="1" required
              /></label>
              <label
                >Collection
                <select name="collection_mode">
                  <option value="manual">invoice (net terms)</option>
                  <option value="automatic">card (checkout link)</option>
                </select></label
              >
              <button type="submit">Create subscription</button>
            </form>`
          : html`<p class="muted">
              A new subscription needs an address of this customer and an active recurring price
              (<code>clavitor billing create addresses</code>, <code>prices</code>).
            </p>`
        : ''
    }
    <h2>Vaults</h2>
    ${
      v.vaults.length
        ? table(
            [
              ['Id', (r) => html`<a href="/admin/vaults/${String(r.id)}"><code>${r.id}</code></a>`],
              ['Name', (r) => r.name],
              ['Subscription', (r) => r.subscription_id ?? 'none'],
            ],
            v.vaults as unknown as Array<Record<string, unknown>>,
          )
        : html`<p class="muted">None yet.</p>`
    }
    ${
      change
        ? html`<form method="post" action="/admin/vaults" class="inline-form" id="create-vault">
            <h2>New vault</h2>
            <input type="hidden" name="_csrf" value="${ctx.csrf}" />
            <input type="hidden" name="customer_id" value="${c.id}" />
            <label>Name <input name="name" required maxlength="200" /></label>
            <label
              >Subscription
              <select name="subscription_id">
                <option value="">none (cannot register yet)</option>
                ${v.subscriptions.map((r) => html`<option value="${String(r.id)}">${r.id} (${r.status})</option>`)}
              </select></label
            >
            <button type="submit">Create vault</button>
          </form>`
        : ''
    }`
}

/** Edit a customer's name and email; move it under another parent of the same level. */
function customerEditForms(ctx: PageCtx, c: PublicRow): SafeHtml {
  const level = Number(c.level)
  return html`<form
      method="post"
      action="/admin/customers/${c.id}/edit"
      class="inline-form"
      id="edit-customer"
    >
      <h2>Edit</h2>
      <input type="hidden" name="_csrf" value="${ctx.csrf}" />
      <label>Name <input name="name" maxlength="200" value="${c.name ?? ''}" /></label>
      <label>Email <input name="email" type="email" maxlength="320" value="${c.email}" /></label>
      <button type="submit">Save</button>
    </form>
    ${
      level >= 2
        ? html`<form
            method="post"
            action="/admin/customers/${c.id}/move"
            class="inline-form"
            id="move-customer"
          >
            <h2>Move</h2>
            <input type="hidden" name="_csrf" value="${ctx.csrf}" />
            <label
              >New parent (${level === 2 ? 'an MSP' : 'a customer'} id)
              <input name="parent_id" required maxlength="200" placeholder="ctm_…"
            /></label>
            <button type="submit">Move</button>
          </form>`
        : ''
    }`
}

/** One subscription: its state at Paddle, what waits, its vaults, and the actions. */
export function subscriptionPage(ctx: PageCtx, v: SubscriptionView): string {
  const r = v.subscription
  const change = can(ctx.session.role, 'change')
  const checkout = typeof r.checkout_url === 'string' ? r.checkout_url : null
  const action = (name: string, label: string, extra: SafeHtml = html``, danger = false) =>
    html`<form method="post" action="/admin/subscriptions/${r.id}/action" class="row-action">
      <input type="hidden" name="_csrf" value="${ctx.csrf}" />
      <input type="hidden" name="action" value="${name}" /> ${extra}
      <button type="submit" class="${danger ? 'danger' : ''}">${label}</button>
    </form>`
  const when = html`<select name="effective_from" aria-label="When">
    <option value="next_billing_period">at the period end</option>
    <option value="immediately">now</option>
  </select>`
  return layout(
    ctx,
    `Subscription ${String(r.id)}`,
    html`<dl class="facts">
        <dt>Customer</dt>
        <dd><a href="/admin/customers/${String(r.customer_id)}">${r.customer_id}</a></dd>
        <dt>Status</dt>
        <dd id="subscription-status">${r.status}</dd>
        <dt>Collection</dt>
        <dd>${r.collection_mode === 'automatic' ? 'card' : 'invoice'}</dd>
        <dt>Current period</dt>
        <dd>${r.current_period_starts_at ?? '—'} → ${r.current_period_ends_at ?? '—'}</dd>
        <dt>Scheduled change</dt>
        <dd>${r.scheduled_change ? JSON.stringify(r.scheduled_change) : 'none'}</dd>
        <dt>Waiting action</dt>
        <dd id="pending-change">${r.pending_change ? JSON.stringify(r.pending_change) : 'none'}</dd>
        <dt>Paddle</dt>
        <dd>
          <code>${r.paddle_id ?? '—'}</code> ${syncBadge(r)}
          ${r.last_error ? html`<span class="error" id="last-error">${r.last_error}</span>` : ''}
        </dd>
        ${
          checkout
            ? html`<dt>Checkout link</dt>
                <dd><a id="checkout-url" href="${checkout}">${checkout}</a></dd>`
            : ''
        }
      </dl>
      ${
        change
          ? html`<h2>Actions</h2>
              <div class="actions">
                ${action('cancel', 'Cancel', when, true)} ${action('pause', 'Pause', when)}
                ${action('resume', 'Resume')}
                ${
                  v.prices.length
                    ? action(
                        'change_items',
                        'Change plan or quantity',
                        html`<select name="price_id" aria-label="Price">
                            ${v.prices.map((p) => html`<option value="${String(p.id)}">${p.name ?? p.description ?? p.id}: ${money(String(p.unit_amount), String(p.currency_code))} / ${p.billing_interval}</option>`)}
                          </select>
                          <input
                            name="quantity"
                            type="number"
                            min="1"
                            max="10000"
                            value="1"
                            aria-label="Quantity"
                          />
                          <select name="proration_billing_mode" aria-label="Billing of the change">
                            ${PRORATION_MODES.map((m) => html`<option value="${m}">${m.replaceAll('_', ' ')}</option>`)}
                          </select>`,
                      )
                    : ''
                }
                ${
                  r.state !== 'synced'
                    ? html`<form
                        method="post"
                        action="/admin/subscriptions/${r.id}/retry"
                        class="row-action"
                      >
                        <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                        <button type="submit">Retry at Paddle now</button>
                      </form>`
                    : ''
                }
              </div>`
          : ''
      }
      <h2>Vaults</h2>
      ${
        v.vaults.length
          ? html`<ul>
              ${v.vaults.map((x) => html`<li><a href="/admin/vaults/${x.id}">${x.name}</a> <code>${x.id}</code></li>`)}
            </ul>`
          : html`<p class="muted">No vault on it.</p>`
      }`,
  )
}

/** One vault: usage against its plan's limits, its keys, and a new key shown once. */
export function vaultPage(
  ctx: PageCtx,
  v: VaultView,
  issued?: { id: string; key: string },
): string {
  const st = v.status
  const limit = (n: number | null) => (n === null ? 'no limit' : String(n))
  const change = can(ctx.session.role, 'change')
  return layout(
    ctx,
    `Vault ${v.vault.name}`,
    html`<dl class="facts">
        <dt>Id</dt>
        <dd><code>${v.vault.id}</code></dd>
        <dt>Customer</dt>
        <dd><a href="/admin/customers/${v.vault.customer_id}">${v.vault.customer_id}</a></dd>
        <dt>Subscription</dt>
        <dd>
          ${
            st.subscription
              ? html`<a href="/admin/subscriptions/${st.subscription.id}">${st.subscription.id}</a>
                  (${st.subscription.status})`
              : 'none: it cannot register'
          }
        </dd>
        <dt>Plan</dt>
        <dd>
          ${st.plans.length ? st.plans.map((p) => `${p.name} × ${p.quantity}`).join(', ') : 'none (no limits)'}
        </dd>
        <dt>Devices</dt>
        <dd id="usage-devices">${st.usage.devices} of ${limit(st.limits.max_devices_per_vault)}</dd>
        <dt>Vaults of the subscription</dt>
        <dd>${st.usage.vaults} of ${limit(st.limits.max_vaults)}</dd>
      </dl>
      ${
        issued
          ? html`<div class="invite">
              <p>New API key <code>${issued.id}</code> (shown once; give it to the vault now):</p>
              <p><code id="vault-key">${issued.key}</code></p>
            </div>`
          : ''
      }
      <h2>API keys</h2>
      ${table(
        [
          ['Id', (r) => html`<code>${r.id}</code>`],
          ['Created', (r) => fmtTime(r.created_at as number)],
          [
            'State',
            (r) =>
              r.revoked_at
                ? `revoked ${fmtTime(r.revoked_at as number)}`
                : change
                  ? html`<form
                      method="post"
                      action="/admin/vault-keys/${String(r.id)}/revoke"
                      class="row-action"
                    >
                      <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                      <button type="submit" class="danger">Revoke</button>
                    </form>`
                  : 'active',
          ],
        ],
        v.keys as unknown as Array<Record<string, unknown>>,
      )}
      ${
        change
          ? html`<form
              method="post"
              action="/admin/vaults/${v.vault.id}/keys"
              class="inline-form"
              id="issue-key"
            >
              <input type="hidden" name="_csrf" value="${ctx.csrf}" />
              <button type="submit">Issue an API key</button>
            </form>`
          : ''
      }`,
  )
}

export function subscriptionsPage(
  ctx: PageCtx,
  page: Page<Record<string, unknown>>,
  filter: ListFilter = {},
): string {
  return layout(
    ctx,
    'Subscriptions',
    html`${filterForm('/admin/subscriptions', filter, ['active', 'trialing', 'past_due', 'paused', 'canceled'])}${table(
      [
        [
          'Id',
          (r) => html`<a href="/admin/subscriptions/${String(r.id)}"><code>${r.id}</code></a>`,
        ],
        [
          'Customer',
          (r) =>
            html`<a href="/admin/customers/${String(r.customer_id)}"
              >${r.customer_name ?? r.customer_id}</a
            >`,
        ],
        ['Vault', (r) => r.vault_id ?? r.vault_l0 ?? ''],
        ['Status', (r) => r.status],
        ['Currency', (r) => r.currency_code],
        ['Discount', (r) => r.discount_id ?? ''],
        ['Next billed', (r) => r.next_billed_at ?? ''],
        ['Paddle', (r) => syncBadge(r)],
      ],
      page.rows,
    )}${pager('/admin/subscriptions', page, filterParams(filter))}`,
  )
}

export function transactionsPage(
  ctx: PageCtx,
  page: Page<Record<string, unknown>>,
  filter: ListFilter = {},
): string {
  return layout(
    ctx,
    'Transactions',
    html`${filterForm('/admin/transactions', filter, ['draft', 'ready', 'billed', 'paid', 'completed', 'canceled', 'past_due'])}${table(
      [
        ['Id', (r) => html`<a href="/admin/transactions/${String(r.id)}"><code>${r.id}</code></a>`],
        ['Customer', (r) => r.customer_name ?? r.customer_id ?? ''],
        ['Subscription', (r) => r.subscription_id ?? ''],
        ['Status', (r) => r.status],
        [
          'Total',
          (r) => (r.grand_total ? money(String(r.grand_total), String(r.currency_code)) : ''),
        ],
        ['Billed', (r) => r.billed_at ?? ''],
        ['Paddle', (r) => syncBadge(r)],
      ],
      page.rows,
    )}${pager('/admin/transactions', page, filterParams(filter))}`,
  )
}

export function vaultsPage(
  ctx: PageCtx,
  page: Page<Record<string, unknown>>,
  filter: ListFilter = {},
): string {
  return layout(
    ctx,
    'Vaults',
    html`${filterForm('/admin/vaults', filter)}${table(
      [
        ['Id', (r) => html`<a href="/admin/vaults/${String(r.id)}"><code>${r.id}</code></a>`],
        ['Name', (r) => r.name],
        ['Customer', (r) => r.customer_name ?? r.customer_id],
        [
          'Subscription',
          (r) =>
            r.subscription_id ? `${r.subscription_id} (${r.subscription_status ?? '?'})` : 'none',
        ],
        ['Credentials', (r) => r.credentials],
        ['P0s', (r) => r.p0s],
        ['Created', (r) => fmtTime(r.created_at as number)],
      ],
      page.rows,
    )}${pager('/admin/vaults', page, filterParams(filter))}`,
  )
}

export function discountsPage(
  ctx: PageCtx,
  page: Page<Record<string, unknown>>,
  filter: ListFilter = {},
): string {
  return layout(
    ctx,
    'Discounts (MSP margins)',
    html`${filterForm('/admin/discounts', filter, ['active', 'archived'])}${table(
      [
        ['Id', (r) => html`<code>${r.id}</code>`],
        [
          'MSP',
          (r) =>
            r.msp_id
              ? html`<a href="/admin/customers/${String(r.msp_id)}">${r.msp_name ?? r.msp_id}</a>`
              : '',
        ],
        ['Description', (r) => r.description],
        ['Type', (r) => r.type],
        [
          'Amount',
          (r) =>
            r.type === 'percentage' ? `${r.amount} %` : `${r.amount} ${r.currency_code ?? ''}`,
        ],
        [
          'Subscriptions',
          (r) =>
            html`<a
              href="/admin/subscriptions?${new URLSearchParams({ discount: String(r.id) }).toString()}"
              >${r.subscriptions}</a
            >`,
        ],
        ['Status', (r) => r.status],
        ['Paddle', (r) => syncBadge(r)],
        ...(can(ctx.session.role, 'change') && ctx.session.scope === null
          ? ([
              [
                '',
                (r) =>
                  html`<form
                      method="post"
                      action="/admin/discounts/${String(r.id)}/edit"
                      class="row-action"
                    >
                      <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                      <input
                        name="description"
                        value="${r.description}"
                        maxlength="500"
                        aria-label="Description"
                      />
                      <input name="amount" value="${r.amount}" size="6" aria-label="Amount" />
                      <button type="submit">Save</button>
                    </form>
                    ${
                      r.status === 'archived'
                        ? ''
                        : html`<form
                            method="post"
                            action="/admin/discounts/${String(r.id)}/archive"
                            class="row-action"
                          >
                            <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                            <button type="submit" class="danger">Archive</button>
                          </form>`
                    }`,
              ],
            ] as Array<[string, (r: Record<string, unknown>) => unknown]>)
          : []),
      ],
      page.rows,
    )}${pager('/admin/discounts', page, filterParams(filter))}`,
  )
}

export function eventsPage(
  ctx: PageCtx,
  d: {
    rows: EventRow[]
    filter: { kind: string; actor: string; outcome: string }
    chain: VerifyResult
    nextBefore: number | null
    names: Map<string, string>
  },
): string {
  const f = d.filter
  const chain = d.chain.ok
    ? html`<p class="chain ok">
        Audit chain verifies: ${d.chain.count} events, head
        ${d.chain.head ? html`#${d.chain.head.id} <code>${d.chain.head.hash.slice(0, 16)}…</code>` : 'empty'}.
      </p>`
    : html`<p class="chain broken">
        Audit chain BROKEN at event #${d.chain.firstBrokenId}: ${d.chain.reason}
      </p>`
  const more =
    d.nextBefore !== null
      ? `/admin/events?${new URLSearchParams({ ...f, before: String(d.nextBefore) }).toString()}`
      : null
  return layout(
    ctx,
    'Events',
    html`${chain}
      <form method="get" action="/admin/events" class="filters">
        <label>Kind <input name="kind" value="${f.kind}" placeholder="admin.action" /></label>
        <label>Actor <input name="actor" value="${f.actor}" placeholder="human or POP id" /></label>
        <label
          >Outcome <input name="outcome" value="${f.outcome}" placeholder="ok, refused, …"
        /></label>
        <button type="submit">Filter</button> <a href="/admin/events">Clear</a>
      </form>
      ${table(
        [
          ['#', (r) => r.id],
          ['At', (r) => fmtTime(r.at as number)],
          ['Kind', (r) => r.kind],
          [
            'Actor',
            (r) =>
              html`${r.actor}${d.names.has(String(r.actor)) ? html` <span class="muted">(${d.names.get(String(r.actor))})</span>` : ''}`,
          ],
          ['Outcome', (r) => html`<span class="outcome ${String(r.outcome)}">${r.outcome}</span>`],
          ['Reason', (r) => r.reason ?? ''],
          ['IP', (r) => r.ip ?? ''],
          ['Details', (r) => html`<code class="data">${r.data ?? ''}</code>`],
        ],
        d.rows as unknown as Array<Record<string, unknown>>,
      )}
      ${more ? html`<p class="pager"><a href="${more}">Older →</a></p>` : ''}`,
  )
}

export function adminsPage(
  ctx: PageCtx,
  admins: AdminRow[],
  invite?: { url: string; role: string; scope: string | null; expiresAt: number },
): string {
  const owner = can(ctx.session.role, 'admins')
  return layout(
    ctx,
    'Admins',
    html`${table(
      [
        ['Name', (r) => r.name],
        ['Role', (r) => r.role ?? 'none'],
        [
          'Scope',
          (r) =>
            r.scope
              ? html`<a href="/admin/customers/${String(r.scope)}">${r.scope_name ?? r.scope}</a>`
              : 'installation',
        ],
        ['Keys', (r) => r.credentials],
        ['Last login', (r) => fmtTime(r.last_used_at as number | null)],
        ['Enrolled', (r) => fmtTime(r.created_at as number)],
        ['State', (r) => (r.disabled_at ? 'disabled' : 'active')],
        ...(owner
          ? ([
              [
                '',
                (r) =>
                  r.disabled_at || r.id === ctx.session.humanId
                    ? ''
                    : html`<form
                          method="post"
                          action="/admin/admins/${String(r.id)}/role"
                          class="row-action"
                        >
                          <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                          <select name="role" aria-label="New role for ${String(r.name)}">
                            ${ROLES.map(
                              (role) =>
                                html`<option value="${role}" ${role === r.role ? 'selected' : ''}>
                                  ${role}
                                </option>`,
                            )}
                          </select>
                          <button type="submit">Change role</button>
                        </form>
                        <form
                          method="post"
                          action="/admin/admins/${String(r.id)}/disable"
                          class="row-action"
                        >
                          <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                          <button type="submit" class="danger">Disable</button>
                        </form>`,
              ],
            ] as Array<[string, (r: Record<string, unknown>) => unknown]>)
          : []),
      ],
      admins as unknown as Array<Record<string, unknown>>,
    )}
    ${
      invite
        ? html`<div class="invite">
            <p>
              One-time enrollment link for a new <b>${invite.role}</b>
              ${invite.scope ? html`of <code>${invite.scope}</code>` : 'of the whole installation'}
              (valid until ${fmtTime(invite.expiresAt)} UTC; shown once):
            </p>
            <p><code id="invite-url">${invite.url}</code></p>
          </div>`
        : ''
    }
    ${
      owner
        ? html`<form method="post" action="/admin/admins/invite" class="inline-form">
            <h2>Enroll another admin</h2>
            <input type="hidden" name="_csrf" value="${ctx.csrf}" />
            <label
              >Role
              <select name="role">
                <option value="viewer">viewer</option>
                <option value="operator">operator</option>
                <option value="owner">owner</option>
              </select></label
            >
            <label
              >Scope (customer id; empty:
              ${ctx.session.scope ? html`<code>${ctx.session.scope}</code>` : 'the whole installation'})
              <input name="scope" maxlength="200" placeholder="ctm_…"
            /></label>
            <button type="submit">Create enrollment link</button>
          </form>`
        : html`<p class="muted">Only an owner can enroll admins.</p>`
    }`,
  )
}

export function loginPage(csrf: string, message?: string): string {
  return bare(
    'Log in',
    html`<p>Log in with your security key.</p>
      ${message ? html`<p class="flash error">${message}</p>` : ''}
      <div id="webauthn" data-csrf="${csrf}" data-mode="login">
        <button type="button" id="go">Use security key</button>
        <p id="status" class="muted" role="status"></p>
      </div>`,
    ['/admin/assets/simplewebauthn-browser.js', '/admin/assets/webauthn.js'],
  )
}

export function setupPage(csrf: string, token: string, role: string): string {
  return bare(
    'Enroll your security key',
    html`<p>This one-time link enrolls a new <b>${role}</b>. It stops working once used.</p>
      <div id="webauthn" data-csrf="${csrf}" data-mode="enroll" data-token="${token}">
        <label
          >Your name <input id="name" name="name" required maxlength="64" autocomplete="username"
        /></label>
        <button type="button" id="go">Enroll security key</button>
        <p id="status" class="muted" role="status"></p>
      </div>`,
    ['/admin/assets/simplewebauthn-browser.js', '/admin/assets/webauthn.js'],
  )
}

export function errorPage(status: number, title: string, message: string, back = '/admin'): string {
  return bare(
    title,
    html`<p class="flash error">${message}</p>
      <p><a href="${back}">Back</a></p>
      <p class="muted">HTTP ${status}</p>`,
  )
}

/** A token just made: its secret is on this page once. */
export interface IssuedTokenView {
  id: string
  name: string
  token: string
}

export function tokensPage(ctx: PageCtx, tokens: ApiTokenInfo[], issued?: IssuedTokenView): string {
  return layout(
    ctx,
    'API tokens',
    html`<p class="muted">
        Tokens for the JSON admin API (<code>/admin/api/v1</code>, docs/api.md). Each acts as you,
        with your role and scope as they are at each request.
      </p>
      ${
        issued
          ? html`<div class="invite">
              <p>Your new token <b>${issued.name}</b> (shown once; store it now):</p>
              <p><code id="api-token">${issued.token}</code></p>
            </div>`
          : ''
      }
      ${table(
        [
          ['Name', (r) => r.name],
          ['Id', (r) => html`<code>${r.id}</code>`],
          ['Created', (r) => fmtTime(r.created_at as number)],
          ['Last used', (r) => fmtTime(r.last_used_at as number | null)],
          [
            'State',
            (r) =>
              r.revoked_at
                ? `revoked ${fmtTime(r.revoked_at as number)}`
                : html`<form
                    method="post"
                    action="/admin/tokens/${String(r.id)}/revoke"
                    class="row-action"
                  >
                    <input type="hidden" name="_csrf" value="${ctx.csrf}" />
                    <button type="submit" class="danger">Revoke</button>
                  </form>`,
          ],
        ],
        tokens as unknown as Array<Record<string, unknown>>,
      )}
      <form method="post" action="/admin/tokens" class="inline-form" id="create-token">
        <h2>Create a token</h2>
        <input type="hidden" name="_csrf" value="${ctx.csrf}" />
        <label>Name (what it is for) <input name="name" required maxlength="64" /></label>
        <button type="submit">Create token</button>
      </form>`,
  )
}

/** One transaction, its adjustments, and a refund or credit form. */
export function transactionPage(
  ctx: PageCtx,
  v: { transaction: PublicRow; adjustments: PublicRow[] },
): string {
  const r = v.transaction
  const cur = String(r.currency_code)
  return layout(
    ctx,
    `Transaction ${String(r.id)}`,
    html`<dl class="facts">
        <dt>Customer</dt>
        <dd><a href="/admin/customers/${String(r.customer_id)}">${r.customer_id}</a></dd>
        <dt>Subscription</dt>
        <dd>
          ${r.subscription_id ? html`<a href="/admin/subscriptions/${String(r.subscription_id)}">${r.subscription_id}</a>` : 'none'}
        </dd>
        <dt>Status</dt>
        <dd>${r.status}</dd>
        <dt>Total</dt>
        <dd>${r.grand_total ? money(String(r.grand_total), cur) : '—'}</dd>
        <dt>Paddle</dt>
        <dd><code>${r.paddle_id ?? '—'}</code> ${syncBadge(r)}</dd>
      </dl>
      <h2>Adjustments</h2>
      ${
        v.adjustments.length
          ? table(
              [
                ['Id', (a) => html`<code>${a.id}</code>`],
                ['Action', (a) => a.action],
                ['Amount', (a) => (a.total ? money(String(a.total), cur) : '')],
                ['Status', (a) => a.status],
                ['Reason', (a) => a.reason],
                ['Paddle', (a) => syncBadge(a)],
              ],
              v.adjustments as Array<Record<string, unknown>>,
            )
          : html`<p class="muted" id="no-adjustments">None.</p>`
      }
      ${
        can(ctx.session.role, 'change')
          ? html`<form
              method="post"
              action="/admin/transactions/${r.id}/adjustments"
              class="inline-form"
              id="adjust"
            >
              <h2>Refund or credit</h2>
              <input type="hidden" name="_csrf" value="${ctx.csrf}" />
              <label
                >Action
                <select name="action">
                  <option value="refund">refund</option>
                  <option value="credit">credit</option>
                </select></label
              >
              <label
                >Amount (minor units of ${cur}; empty: the whole transaction)
                <input name="amount" pattern="[0-9]+"
              /></label>
              <label>Reason <input name="reason" required maxlength="1000" /></label>
              <button type="submit">Create adjustment</button>
            </form>`
          : ''
      }`,
  )
}
