// What an admin can see and do, for one acting admin: the one set of functions the web
// pages and the JSON admin API both call (server/admin/routes.ts, server/admin/api.ts).
// Every read is limited to the actor's scope (scope.ts: lists filter, a single object
// outside it is refused and audited) and every change goes through Admin.perform (role
// check, 'admin.action' audit event) after the scope check. The rules of the objects
// themselves (hierarchy, dual write, limits) stay in lib/billing and lib/credentials.
import { listEvents, verifyChain, type EventFilter, type EventRow } from '../audit/log.js'
import type { Billing, CustomerNode, PendingRow, PublicRow } from '../billing/billing.js'
import type { RevenueRow } from '../billing/reports.js'
import type { Credentials, ApiKeyInfo, Vault, VaultStatus } from '../credentials/index.js'
import { revokeCert } from '../auth/ca.js'
import { enrolPop, retirePop, type RsyncSecret } from '../core-sync/pop-registry.js'
import type { PopRecord } from '../auth/pops.js'
import { claError } from '../errors.js'
import type { Admin, ApiTokenInfo } from './admin.js'
import type { Actor, RequestFacts } from './context.js'
import {
  createCustomer,
  createMspMargin,
  type MspMarginInput,
  type NewCustomerInput,
} from './customers.js'
import type { AdminRow } from './humans.js'
import {
  blobGrowth,
  dashboardFacts,
  listDiscounts,
  listSubscriptions,
  listTransactions,
  listVaults,
  mspDiscount,
  popLagSeries,
  popStates,
  type DashboardFacts,
  type Page,
  type PopStateRow,
} from './read.js'
import type { Role } from './roles.js'
import type { Reach } from './scope.js'
import type { IssuedToken } from './setup-links.js'

/** The parts of a core the desk works with (a Core has them all). */
export interface DeskDeps {
  admin: Admin
  billing: Billing
  credentials: Credentials
  /** The core's data folder (the POP registry's rsync secrets, the private CA). */
  dataDir: string
}

/** The dashboard: counts within the scope, and the installation's health for its admins. */
export interface Dashboard {
  facts: DashboardFacts
  /** Revenue, dual writes waiting, POPs and charts: null for a scoped admin. */
  installation: {
    revenue: RevenueRow[]
    pending: PendingRow[]
    pops: PopStateRow[]
    growth: Array<{ at: number; count: number; bytes: number }>
    lag: Array<{ popId: string; points: Array<{ at: number; lagUs: number }> }>
  } | null
}

/** One customer's page: the row, its ancestors within the scope, children, MSP margin. */
export interface CustomerView {
  customer: PublicRow
  ancestors: PublicRow[]
  children: CustomerNode[]
  margin: Record<string, unknown> | undefined
  /** Its subscriptions and vaults (newest first, at most 100 each). */
  subscriptions: PublicRow[]
  vaults: Vault[]
  /** What a new subscription form offers: its active addresses, active recurring prices. */
  addresses: PublicRow[]
  prices: PublicRow[]
}

/** One subscription's page: the row, the vaults it pays for, the prices it may move to. */
export interface SubscriptionView {
  subscription: PublicRow
  vaults: Vault[]
  /** Active recurring prices in the subscription's currency (a plan or quantity change). */
  prices: PublicRow[]
}

/** One vault's page: the vault, its keys (never their secrets), plan limits and usage. */
export interface VaultView {
  vault: Vault
  keys: ApiKeyInfo[]
  status: VaultStatus
}

/** Paging of a list (lib/admin/read.ts pageArgs parses it from a query), and its filters. */
export interface PageArgs {
  limit: number
  offset: number
  /** Only rows with this status. */
  status?: string
  /** Only rows of this customer. */
  customer?: string
  /** Only subscriptions carrying this discount. */
  discount?: string
}

export class AdminDesk {
  constructor(
    private readonly deps: DeskDeps,
    /** Who acts: their role and scope decide every answer. */
    readonly actor: Actor,
    /** What the app knows of the request, for the audit trail. */
    private readonly facts: Partial<RequestFacts> = {},
  ) {}

  private get db() {
    return this.deps.admin.db
  }

  /** True for an admin of the whole installation (no customer scope). */
  get installationWide(): boolean {
    return this.actor.scope === null
  }

  /** Refuses (audited, CLA_ERR_ADMIN_SCOPE) what lies outside the actor's scope. */
  private reach(action: string, reach: Reach, data: Record<string, unknown> = {}): void {
    this.deps.admin.requireReach(this.actor, action, reach, this.facts, data)
  }

  private customerOf(entity: 'subscriptions' | 'transactions', id: string): string | null {
    const row = this.deps.billing.get(entity, id)
    return typeof row.customer_id === 'string' ? row.customer_id : null
  }

  private vault(action: string, vaultId: string): Vault {
    const v = this.deps.credentials.getVault(vaultId)
    if (!v) throw claError('CLA_ERR_NOT_FOUND', `vault ${vaultId} does not exist`)
    this.reach(action, { customer: v.customer_id }, { vault: vaultId })
    return v
  }

  // --- reads ----------------------------------------------------------------------------

  dashboard(): Dashboard {
    const scope = this.actor.scope
    return {
      facts: dashboardFacts(this.db, scope),
      installation:
        scope === null
          ? {
              revenue: this.deps.billing.revenueByDiscount(),
              pending: this.deps.billing.pending(),
              pops: popStates(this.db),
              growth: blobGrowth(this.db),
              lag: popLagSeries(this.db),
            }
          : null,
    }
  }

  /** The customer forest; for a scoped admin, the one subtree they reach. */
  customerTree(): CustomerNode[] {
    const tree = this.deps.billing.customerTree()
    const scope = this.actor.scope
    if (scope === null) return tree
    const node = findNode(tree, scope)
    return node ? [node] : []
  }

  /** Customers within the scope whose name, email or id contains `q` (at most 100). */
  searchCustomers(q: string): PublicRow[] {
    const needle = q.trim().toLowerCase()
    if (!needle) return []
    const out: PublicRow[] = []
    const stack = [...this.customerTree()]
    for (let n = stack.pop(); n && out.length < 100; n = stack.pop()) {
      const hay = `${n.name ?? ''} ${n.email ?? ''} ${n.id}`.toLowerCase()
      if (hay.includes(needle)) out.push(n as unknown as PublicRow)
      stack.push(...n.children)
    }
    return out
  }

  customer(id: string): CustomerView {
    const customer = this.deps.billing.get('customers', id)
    this.reach('customer.read', { customer: id })
    const ancestors: PublicRow[] = []
    for (let p = customer.parent_id; typeof p === 'string' && ancestors.length < 3;) {
      const row = this.deps.billing.get('customers', p)
      if (this.deps.admin.reaches(this.actor, { customer: p })) ancestors.unshift(row)
      p = row.parent_id
    }
    const { billing, credentials } = this.deps
    return {
      customer,
      ancestors,
      children: findNode(billing.customerTree(), id)?.children ?? [],
      margin: customer.level === 1 ? mspDiscount(this.db, id) : undefined,
      subscriptions: billing.list('subscriptions', { customer_id: id, limit: 100 }),
      vaults: credentials.listVaults({ customerId: id, limit: 100 }),
      addresses: billing
        .list('addresses', { customer_id: id, limit: 100 })
        .filter((a) => a.status === 'active'),
      prices: billing
        .list('prices', { limit: 500 })
        .filter((p) => p.status === 'active' && p.billing_interval),
    }
  }

  subscriptions(p: PageArgs): Page<Record<string, unknown>> {
    return listSubscriptions(this.db, { ...p, scope: this.actor.scope })
  }

  /** One transaction with its adjustments. */
  transaction(id: string): { transaction: PublicRow; adjustments: PublicRow[] } {
    const transaction = this.deps.billing.get('transactions', id)
    this.reach('transaction.read', { customer: this.customerOf('transactions', id) })
    const adjustments = this.deps.billing
      .list('adjustments', { customer_id: String(transaction.customer_id), limit: 500 })
      .filter((a) => a.transaction_id === id)
    return { transaction, adjustments }
  }

  subscription(id: string): SubscriptionView {
    const subscription = this.deps.billing.get('subscriptions', id)
    this.reach('subscription.read', { customer: this.customerOf('subscriptions', id) })
    const vaults = this.deps.credentials
      .listVaults({ customerId: String(subscription.customer_id), limit: 500 })
      .filter((v) => v.subscription_id === id)
    const prices = this.deps.billing
      .list('prices', { limit: 500 })
      .filter(
        (p) =>
          p.status === 'active' &&
          p.billing_interval &&
          p.currency_code === subscription.currency_code,
      )
    return { subscription, vaults, prices }
  }

  transactions(p: PageArgs): Page<Record<string, unknown>> {
    return listTransactions(this.db, { ...p, scope: this.actor.scope })
  }

  vaults(p: PageArgs): Page<Record<string, unknown>> {
    return listVaults(this.db, { ...p, scope: this.actor.scope })
  }

  /** A vault with its keys (never their secrets), its plan's limits and its usage. */
  vaultWithKeys(vaultId: string): VaultView {
    const vault = this.vault('vault.read', vaultId)
    return {
      vault,
      keys: this.deps.credentials.listApiKeys(vaultId),
      status: this.deps.credentials.vaultStatus(vaultId),
    }
  }

  discounts(p: PageArgs): Page<Record<string, unknown>> {
    return listDiscounts(this.db, { ...p, scope: this.actor.scope })
  }

  /** POPs and their sync state: installation-wide admins only. */
  pops(): PopStateRow[] {
    this.reach('pops.read', 'installation')
    return popStates(this.db)
  }

  /** The audit log (a page of it) and its chain check: installation-wide admins only. */
  events(filter: EventFilter): { rows: EventRow[]; chain: ReturnType<typeof verifyChain> } {
    this.reach('events.read', 'installation')
    return { rows: listEvents(this.db, filter), chain: verifyChain(this.db) }
  }

  /** The admins whose scope lies within the actor's. */
  admins(): AdminRow[] {
    return this.deps.admin.listAdmins(this.actor.scope)
  }

  // --- changes --------------------------------------------------------------------------

  /**
   * A customer under a parent within the scope; an MSP (no parent) only by an
   * installation-wide admin. See customers.createCustomer.
   */
  async createCustomer(input: NewCustomerInput): Promise<PublicRow> {
    const parentId = input.parentId ? input.parentId : null
    this.reach('customer.create', parentId === null ? 'installation' : { customer: parentId }, {
      parentId,
    })
    return createCustomer(this.deps.admin, this.deps.billing, this.actor, input, this.facts)
  }

  /** The currency of a price (what a subscription on it is billed in); CLA_ERR_NOT_FOUND if none. */
  priceCurrency(priceId: string): string {
    return String(this.deps.billing.get('prices', priceId).currency_code)
  }

  /** Archives a customer (status archived, dual write); its rows stay. */
  async archiveCustomer(id: string): Promise<PublicRow> {
    this.reach('customer.archive', { customer: id })
    return this.deps.admin.performAsync(
      this.actor,
      'customer.archive',
      'change',
      this.facts,
      { id },
      () =>
        this.deps.billing.update(
          'customers',
          id,
          { status: 'archived' },
          { actor: this.actor.humanId },
        ),
    )
  }

  /** Changes a discount's description or amount, or archives it: installation admins only. */
  async updateDiscount(
    id: string,
    patch: { description?: string; amount?: string; status?: 'archived' | 'active' },
  ): Promise<PublicRow> {
    const action = patch.status === 'archived' ? 'discount.archive' : 'discount.update'
    this.reach(action, 'installation', { id })
    const clean = Object.fromEntries(
      Object.entries(patch).filter(([, v]) => typeof v === 'string' && v.trim() !== ''),
    )
    return this.deps.admin.performAsync(
      this.actor,
      action,
      'change',
      this.facts,
      { id, fields: Object.keys(clean) },
      () => this.deps.billing.update('discounts', id, clean, { actor: this.actor.humanId }),
    )
  }

  /**
   * A refund or credit on a transaction within the scope (an adjustment, dual write): the
   * whole transaction, or `amount` (minor units) of its first line item. Paddle approves
   * refunds; revenue moves when it has.
   */
  async adjustTransaction(
    id: string,
    input: { action: 'refund' | 'credit'; reason: string; amount?: string },
  ): Promise<PublicRow> {
    const txn = this.deps.billing.get('transactions', id)
    this.reach(
      `transaction.${input.action}`,
      { customer: this.customerOf('transactions', id) },
      { id },
    )
    const amount = input.amount?.trim()
    let items: Array<Record<string, unknown>> | undefined
    if (amount) {
      const raw =
        typeof txn.raw === 'string' ? (JSON.parse(txn.raw) as Record<string, unknown>) : txn.raw
      const lines = ((raw as { details?: { line_items?: Array<{ id?: string }> } } | null)?.details
        ?.line_items ?? []) as Array<{ id?: string }>
      const itemId = lines[0]?.id
      if (!itemId)
        throw claError(
          'CLA_ERR_INVALID_INPUT',
          `transaction ${id} has no line item from Paddle yet; a partial ${input.action} needs one`,
          { details: { field: 'amount' } },
        )
      items = [{ item_id: itemId, type: 'partial', amount }]
    }
    return this.deps.admin.performAsync(
      this.actor,
      `transaction.${input.action}`,
      'change',
      this.facts,
      { id, amount: amount ?? 'full' },
      () =>
        this.deps.billing.create(
          'adjustments',
          {
            transaction_id: id,
            action: input.action,
            reason: input.reason,
            type: items ? 'partial' : 'full',
            ...(items ? { items } : {}),
          },
          { actor: this.actor.humanId },
        ),
    )
  }

  /** Changes a customer's name or email (dual write). */
  async updateCustomer(id: string, patch: { name?: string; email?: string }): Promise<PublicRow> {
    this.reach('customer.update', { customer: id })
    const clean = Object.fromEntries(
      Object.entries(patch).filter(([, v]) => typeof v === 'string' && v.trim() !== ''),
    )
    return this.deps.admin.performAsync(
      this.actor,
      'customer.update',
      'change',
      this.facts,
      { id, fields: Object.keys(clean) },
      () => this.deps.billing.update('customers', id, clean, { actor: this.actor.humanId }),
    )
  }

  /**
   * Moves a customer under another parent of the same level (another MSP for a customer,
   * another customer for a department); both ends must be within the scope. Its tree takes
   * the new MSP's margin (Billing's margin rules, dual write).
   */
  async moveCustomer(id: string, parentId: string): Promise<PublicRow> {
    this.reach('customer.move', { customer: id }, { to: parentId })
    this.reach('customer.move', { customer: parentId }, { id })
    return this.deps.admin.performAsync(
      this.actor,
      'customer.move',
      'change',
      this.facts,
      { id, to: parentId },
      () =>
        this.deps.billing.update(
          'customers',
          id,
          { parent_id: parentId },
          { actor: this.actor.humanId },
        ),
    )
  }

  /** An MSP's margin: the installation's price to its MSPs, so installation-wide only. */
  async createMargin(input: MspMarginInput): Promise<PublicRow> {
    this.reach('discount.create', 'installation', { mspId: input.mspId })
    return createMspMargin(this.deps.admin, this.deps.billing, this.actor, input, this.facts)
  }

  /**
   * A subscription for a customer within the scope, through the dual write (input as
   * Billing.create('subscriptions'): invoice, or a card checkout link).
   */
  async createSubscription(input: Record<string, unknown>): Promise<PublicRow> {
    const customerId = typeof input.customer_id === 'string' ? input.customer_id : null
    this.reach('subscription.create', { customer: customerId })
    return this.deps.admin.performAsync(
      this.actor,
      'subscription.create',
      'change',
      this.facts,
      { customer: customerId },
      () => this.deps.billing.create('subscriptions', input, { actor: this.actor.humanId }),
    )
  }

  /** Cancel, pause, resume, change items or discount (Billing.changeSubscription). */
  async changeSubscription(id: string, input: unknown): Promise<PublicRow> {
    const action =
      input &&
      typeof input === 'object' &&
      typeof (input as { action?: unknown }).action === 'string'
        ? (input as { action: string }).action
        : 'change'
    this.reach(`subscription.${action}`, { customer: this.customerOf('subscriptions', id) }, { id })
    return this.deps.admin.performAsync(
      this.actor,
      `subscription.${action}`,
      'change',
      this.facts,
      { id },
      () => this.deps.billing.changeSubscription(id, input, { actor: this.actor.humanId }),
    )
  }

  /** Pushes a pending or failed subscription to Paddle again now. */
  async retrySubscription(id: string): Promise<PublicRow> {
    this.reach('subscription.retry', { customer: this.customerOf('subscriptions', id) }, { id })
    return this.deps.admin.performAsync(
      this.actor,
      'subscription.retry',
      'change',
      this.facts,
      { id },
      async () => {
        await this.deps.billing.push('subscriptions', id)
        return this.deps.billing.get('subscriptions', id)
      },
    )
  }

  /** A vault for a customer within the scope, optionally on one of its subscriptions. */
  createVault(input: { customerId: string; subscriptionId?: string | null; name: string }): Vault {
    this.reach('vault.create', { customer: input.customerId })
    return this.deps.admin.perform(
      this.actor,
      'vault.create',
      'change',
      this.facts,
      { customer: input.customerId },
      () => this.deps.credentials.createVault({ ...input, actor: this.actor.humanId }),
    )
  }

  /** A new API key for a vault; the key is in the answer once and never again. */
  issueVaultKey(vaultId: string): { id: string; key: string; vaultId: string } {
    this.vault('vault.key.create', vaultId)
    return this.deps.admin.perform(
      this.actor,
      'vault.key.create',
      'change',
      this.facts,
      { vault: vaultId },
      () => this.deps.credentials.createApiKey(vaultId, { actor: this.actor.humanId }),
    )
  }

  /** Revokes a vault API key (idempotent). */
  revokeVaultKey(keyId: string): ApiKeyInfo {
    const key = this.deps.credentials.getApiKey(keyId)
    if (!key) throw claError('CLA_ERR_NOT_FOUND', `API key ${keyId} does not exist`)
    this.vault('vault.key.revoke', key.vault_id)
    return this.deps.admin.perform(
      this.actor,
      'vault.key.revoke',
      'change',
      this.facts,
      { key: keyId },
      () => this.deps.credentials.revokeApiKey(keyId, { actor: this.actor.humanId }),
    )
  }

  /** A new API token acting as this admin (their role and scope); shown once. */
  createApiToken(name: unknown): { id: string; token: string; name: string } {
    return this.deps.admin.createApiToken(this.actor, name, this.facts)
  }

  /** This admin's own API tokens. */
  apiTokens(): ApiTokenInfo[] {
    return this.deps.admin.listApiTokens(this.actor)
  }

  /** Revokes one of this admin's own API tokens. */
  revokeApiToken(id: string): ApiTokenInfo {
    return this.deps.admin.revokeApiToken(this.actor, id, this.facts)
  }

  /**
   * Enrols a POP from its certificate, as `clavitor core pop add` does (the same library
   * call): installation admins only. The rsync password is in the answer once.
   */
  enrolPop(input: { id: string; certPem: string; allowlist: string[]; name?: string }): {
    pop: PopRecord
    rsync: RsyncSecret
  } {
    this.reach('pop.add', 'installation', { pop: input.id })
    return this.deps.admin.perform(
      this.actor,
      'pop.add',
      'change',
      this.facts,
      { pop: input.id },
      () => enrolPop(this.db, this.deps.dataDir, input, { actor: this.actor.humanId }),
    )
  }

  /** Stops trusting a POP (`clavitor core pop remove`): registry, tokens, rsync password. */
  removePop(id: string): void {
    this.reach('pop.remove', 'installation', { pop: id })
    this.deps.admin.perform(this.actor, 'pop.remove', 'change', this.facts, { pop: id }, () =>
      retirePop(this.db, this.deps.dataDir, id, { actor: this.actor.humanId }),
    )
  }

  /** Revokes every valid certificate of a POP and rewrites the CRL (`clavitor ca revoke --id`). */
  async revokePopCertificates(id: string): Promise<string[]> {
    this.reach('pop.revoke', 'installation', { pop: id })
    return this.deps.admin.performAsync(
      this.actor,
      'pop.revoke',
      'change',
      this.facts,
      { pop: id },
      () => revokeCert(this.deps.dataDir, { popId: id }),
    )
  }

  /** An invite limited to `scope` (default: the actor's own), never more than held. */
  invite(role: Role, scope?: unknown, ttlMs?: number): IssuedToken {
    return this.deps.admin.invite(this.actor, role, this.facts, ttlMs, scope)
  }

  /** Disables an admin within the scope (Admin.disable's rules). */
  disableAdmin(humanId: string): void {
    this.deps.admin.disable(this.actor, humanId, this.facts)
  }

  /** Changes the role of an admin within the scope, never above the actor's own. */
  setAdminRole(humanId: string, role: unknown): { id: string; from: Role | null; to: Role } {
    return this.deps.admin.setRole(this.actor, humanId, role, this.facts)
  }
}

function findNode(tree: CustomerNode[], id: string): CustomerNode | undefined {
  const stack = [...tree]
  for (let n = stack.pop(); n; n = stack.pop()) {
    if (n.id === id) return n
    stack.push(...n.children)
  }
  return undefined
}
