// The JSON admin API's TypeBox schemas and its route table: server/admin/api.ts registers
// the routes from ADMIN_API_ROUTES (validation from these schemas) and server/openapi.ts
// describes the same table in the OpenAPI document, so the two cannot drift.
import { Type, type TSchema } from '@sinclair/typebox'
import type { ErrorCode } from '../../lib/errors.js'

const Id = Type.String({ minLength: 1, maxLength: 200 })
const Row = Type.Record(Type.String(), Type.Unknown(), {
  description: 'A row as stored (the fields of docs/billing.md).',
})
const Paged = (of: TSchema) =>
  Type.Object({
    rows: Type.Array(of),
    limit: Type.Integer(),
    offset: Type.Integer(),
    more: Type.Boolean({ description: 'Another page follows.' }),
  })

export const PageQuery = Type.Object(
  {
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500, description: 'Default 50.' })),
    offset: Type.Optional(Type.Integer({ minimum: 0 })),
    status: Type.Optional(
      Type.String({ maxLength: 40, description: 'Only rows with this status.' }),
    ),
    customer: Type.Optional(
      Type.String({ maxLength: 200, description: 'Only rows of this customer.' }),
    ),
    discount: Type.Optional(
      Type.String({
        maxLength: 200,
        description: 'Subscriptions: only those carrying this discount.',
      }),
    ),
  },
  { additionalProperties: false },
)
export const SearchQuery = Type.Object(
  { q: Type.Optional(Type.String({ maxLength: 200, description: 'Name, email or id contains.' })) },
  { additionalProperties: false },
)
export const CustomerPatch = Type.Object(
  {
    name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    email: Type.Optional(Type.String({ minLength: 3, maxLength: 320 })),
  },
  { additionalProperties: false, minProperties: 1 },
)
export const MoveTo = Type.Object({ parent_id: Id }, { additionalProperties: false })
export const DiscountPatch = Type.Object(
  {
    description: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })),
    amount: Type.Optional(Type.String({ pattern: '^[0-9]+(\\.[0-9]{1,2})?$' })),
  },
  { additionalProperties: false, minProperties: 1 },
)
export const NewAdjustment = Type.Object(
  {
    action: Type.Union([Type.Literal('refund'), Type.Literal('credit')]),
    reason: Type.String({ minLength: 1, maxLength: 1000 }),
    amount: Type.Optional(
      Type.String({
        pattern: '^[0-9]+$',
        description: 'Minor units of the first line item; absent: the whole transaction.',
      }),
    ),
  },
  { additionalProperties: false },
)
export const IdParams = Type.Object({ id: Id })

export const NewCustomer = Type.Object(
  {
    parent_id: Type.Optional(
      Type.Union([Id, Type.Null()], {
        description: 'The parent (an MSP or a customer); none: an MSP (installation admins only).',
      }),
    ),
    name: Type.String({ minLength: 1, maxLength: 200 }),
    email: Type.String({ minLength: 3, maxLength: 320 }),
  },
  { additionalProperties: false },
)
export const NewMargin = Type.Object(
  {
    msp_id: Id,
    description: Type.String({ minLength: 1, maxLength: 200 }),
    percentage: Type.String({ pattern: '^[0-9]{1,3}(\\.[0-9]{1,2})?$' }),
  },
  { additionalProperties: false },
)
export const NewSubscription = Type.Record(Type.String(), Type.Unknown(), {
  description:
    'As `clavitor billing create subscriptions` (docs/billing.md): customer_id, items, ' +
    'collection_mode (manual: invoice; automatic: a card checkout link in the answer)…',
})
export const SubscriptionActionBody = Type.Object(
  {
    action: Type.Union(
      ['cancel', 'pause', 'resume', 'change_items', 'set_discount'].map((a) => Type.Literal(a)),
    ),
  },
  {
    additionalProperties: true,
    description:
      'Billing.changeSubscription input: {action: cancel, effective_from}, {action: pause, ' +
      'effective_from, resume_at?}, {action: resume}, {action: change_items, items, ' +
      'proration_billing_mode}, {action: set_discount, discount_id, effective_from}.',
  },
)
export const NewVault = Type.Object(
  {
    customer_id: Id,
    subscription_id: Type.Optional(Type.Union([Id, Type.Null()])),
    name: Type.String({ minLength: 1, maxLength: 200 }),
  },
  { additionalProperties: false },
)
export const NewInvite = Type.Object(
  {
    role: Type.Union([Type.Literal('owner'), Type.Literal('operator'), Type.Literal('viewer')]),
    scope: Type.Optional(
      Type.Union([Id, Type.Null()], {
        description: "A customer id; null: the installation; absent: the inviter's own scope.",
      }),
    ),
  },
  { additionalProperties: false },
)
export const NewPop = Type.Object(
  {
    id: Type.String({ pattern: '^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$' }),
    cert_pem: Type.String({
      minLength: 1,
      maxLength: 20000,
      description: 'From `clavitor ca issue-pop`.',
    }),
    allowlist: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), {
      minItems: 1,
      maxItems: 64,
    }),
    name: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
)
export const EnrolledPop = Type.Object({
  pop: Row,
  rsync: Type.Object({
    user: Type.String(),
    password: Type.String({ description: "The POP's rsync daemon password: shown once." }),
  }),
})
export const Me = Type.Object({
  humanId: Type.String(),
  name: Type.String(),
  role: Type.String(),
  scope: Type.Union([Type.String(), Type.Null()]),
})
export const IssuedVaultKey = Type.Object({
  id: Type.String(),
  key: Type.String({ description: 'The API key: shown once, never again.' }),
  vaultId: Type.String(),
})
export const IssuedInvite = Type.Object({
  token: Type.String({ description: 'One use; the enrollment page is /admin/setup?token=…' }),
  role: Type.String(),
  scope: Type.Union([Type.String(), Type.Null()]),
  expiresAt: Type.Integer({ description: 'µs since the epoch.' }),
})

/** Codes any admin API route may answer. */
const COMMON: readonly ErrorCode[] = [
  'CLA_ERR_ADMIN_UNAUTHENTICATED',
  'CLA_ERR_ADMIN_FORBIDDEN',
  'CLA_ERR_ADMIN_SCOPE',
  'CLA_ERR_INVALID_INPUT',
  'CLA_ERR_NOT_FOUND',
  'CLA_ERR_ADMIN_RATE_LIMITED',
]

/** One route of the admin API: what it is called, what it takes and answers. */
export interface AdminApiRoute {
  method: 'GET' | 'POST'
  /** Below /admin/api/v1. */
  url: string
  operationId: string
  summary: string
  params?: TSchema
  query?: TSchema
  body?: TSchema
  status: 200 | 201
  response: TSchema
  errors: readonly ErrorCode[]
}

const r = (x: Omit<AdminApiRoute, 'errors'> & { errors?: ErrorCode[] }): AdminApiRoute => ({
  ...x,
  errors: [...COMMON, ...(x.errors ?? [])],
})

/** Every route; server/admin/api.ts gives each its handler by operationId. */
export const ADMIN_API_ROUTES = [
  r({
    method: 'GET',
    url: '/me',
    operationId: 'adminMe',
    summary: 'The admin this token acts as',
    status: 200,
    response: Me,
  }),
  r({
    method: 'GET',
    url: '/dashboard',
    operationId: 'adminDashboard',
    summary: 'Counts within your scope (and the installation, for its admins)',
    status: 200,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/customers',
    operationId: 'adminCustomerTree',
    query: SearchQuery,
    summary: 'The customer tree you reach',
    status: 200,
    response: Type.Array(Row),
  }),
  r({
    method: 'GET',
    url: '/customers/:id',
    operationId: 'adminCustomer',
    summary: 'One customer, its ancestors within your scope, children and margin',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/customers',
    operationId: 'adminCreateCustomer',
    summary: 'Create an MSP, a customer or a department (dual write)',
    body: NewCustomer,
    status: 201,
    response: Row,
    errors: ['CLA_ERR_BILLING_CONFLICT'],
  }),
  r({
    method: 'POST',
    url: '/customers/:id',
    operationId: 'adminUpdateCustomer',
    summary: "Change a customer's name or email (dual write)",
    params: IdParams,
    body: CustomerPatch,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/customers/:id/move',
    operationId: 'adminMoveCustomer',
    summary: 'Move a customer under another parent of the same level (both within your scope)',
    params: IdParams,
    body: MoveTo,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/customers/:id/archive',
    operationId: 'adminArchiveCustomer',
    summary: 'Archive a customer (dual write)',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/subscriptions',
    operationId: 'adminSubscriptions',
    summary: 'Subscriptions within your scope',
    query: PageQuery,
    status: 200,
    response: Paged(Row),
  }),
  r({
    method: 'GET',
    url: '/subscriptions/:id',
    operationId: 'adminSubscription',
    summary: 'One subscription',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/subscriptions',
    operationId: 'adminCreateSubscription',
    summary: 'Create a subscription (invoice, or a card checkout link)',
    body: NewSubscription,
    status: 201,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/subscriptions/:id/actions',
    operationId: 'adminChangeSubscription',
    summary: 'Cancel, pause, resume, change items or discount (we lead, Paddle follows)',
    params: IdParams,
    body: SubscriptionActionBody,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/subscriptions/:id/retry',
    operationId: 'adminRetrySubscription',
    summary: 'Push a pending or failed subscription to Paddle again now',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/transactions',
    operationId: 'adminTransactions',
    summary: 'Transactions within your scope',
    query: PageQuery,
    status: 200,
    response: Paged(Row),
  }),
  r({
    method: 'GET',
    url: '/transactions/:id',
    operationId: 'adminTransaction',
    summary: 'One transaction with its adjustments',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/transactions/:id/adjustments',
    operationId: 'adminAdjustTransaction',
    summary: 'A refund or credit (an adjustment, dual write)',
    params: IdParams,
    body: NewAdjustment,
    status: 201,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/vaults',
    operationId: 'adminVaults',
    summary: 'Vaults within your scope',
    query: PageQuery,
    status: 200,
    response: Paged(Row),
  }),
  r({
    method: 'GET',
    url: '/vaults/:id',
    operationId: 'adminVault',
    summary: 'One vault and its API keys (never their secrets)',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/vaults',
    operationId: 'adminCreateVault',
    summary: 'Create a vault for a customer',
    body: NewVault,
    status: 201,
    response: Row,
    errors: ['CLA_ERR_PLAN_VAULT_LIMIT'],
  }),
  r({
    method: 'POST',
    url: '/vaults/:id/keys',
    operationId: 'adminIssueVaultKey',
    summary: 'Issue a vault API key (shown once)',
    params: IdParams,
    status: 201,
    response: IssuedVaultKey,
  }),
  r({
    method: 'POST',
    url: '/vault-keys/:id/revoke',
    operationId: 'adminRevokeVaultKey',
    summary: 'Revoke a vault API key (idempotent)',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/discounts',
    operationId: 'adminDiscounts',
    summary: 'Discounts (MSP margins) within your scope',
    query: PageQuery,
    status: 200,
    response: Paged(Row),
  }),
  r({
    method: 'POST',
    url: '/discounts',
    operationId: 'adminCreateMargin',
    summary: "Set an MSP's margin (installation admins only)",
    body: NewMargin,
    status: 201,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/discounts/:id',
    operationId: 'adminUpdateDiscount',
    summary: "Change a discount's description or amount (installation admins only)",
    params: IdParams,
    body: DiscountPatch,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/discounts/:id/archive',
    operationId: 'adminArchiveDiscount',
    summary: 'Archive a discount (installation admins only)',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/pops',
    operationId: 'adminPops',
    summary: 'POPs and their sync state (installation admins only)',
    status: 200,
    response: Type.Array(Row),
  }),
  r({
    method: 'POST',
    url: '/pops',
    operationId: 'adminEnrolPop',
    summary:
      'Enrol a POP from its certificate, as `clavitor core pop add` (installation admins only)',
    body: NewPop,
    status: 201,
    response: EnrolledPop,
  }),
  r({
    method: 'POST',
    url: '/pops/:id/remove',
    operationId: 'adminRemovePop',
    summary: 'Stop trusting a POP: registry, tokens, rsync password (installation admins only)',
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'POST',
    url: '/pops/:id/revoke',
    operationId: 'adminRevokePop',
    summary: "Revoke a POP's certificates and rewrite the CRL (installation admins only)",
    params: IdParams,
    status: 200,
    response: Row,
  }),
  r({
    method: 'GET',
    url: '/admins',
    operationId: 'adminAdmins',
    summary: 'Admins within your scope',
    status: 200,
    response: Type.Array(Row),
  }),
  r({
    method: 'POST',
    url: '/admins/invites',
    operationId: 'adminInvite',
    summary: 'An enrollment link for a new admin, never more than you hold',
    body: NewInvite,
    status: 201,
    response: IssuedInvite,
  }),
] as const satisfies readonly AdminApiRoute[]

export type AdminApiOperation = (typeof ADMIN_API_ROUTES)[number]['operationId']
