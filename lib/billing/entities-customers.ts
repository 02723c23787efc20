// Whom we bill: customers (the MSP → customer → department hierarchy), their addresses and
// businesses. One description each (see entity-spec.ts for what the fields mean).
import { Type } from '@sinclair/typebox'
import { claError, type ClavitorError } from '../errors.js'
import type { Db } from '../db/open.js'
import type { EntitySpec, PaddleObj, PushCtx, Row } from './entity-spec.js'
import { CUSTOM_ID_KEY } from './ids.js'
import {
  ACTIVE_AND_ARCHIVED,
  clean,
  customData,
  customerCustomData,
  customerFromPaddle,
  parseJson,
  userCustomData,
  str,
  bool,
} from './mapping.js'
import { paddleDetails } from './paddle-client.js'
import { ancestors, requireRow } from './references.js'
import { CustomData, Country, Email, Id, Text, partialUpdate, strict } from './schemas.js'

// --- customers ---------------------------------------------------------------------------
const customerProps = {
  email: Email,
  name: Type.Optional(Text(200)),
  locale: Type.Optional(Type.String({ pattern: '^[a-z]{2}([-_][A-Za-z]{2,4})?$' })),
  marketing_consent: Type.Optional(Type.Boolean()),
  custom_data: Type.Optional(CustomData),
}

export const customers: EntitySpec = {
  name: 'customers',
  table: 'customers',
  prefix: 'cus',
  paddlePrefix: 'ctm',
  eventName: 'customer',
  create: Type.Object(
    {
      ...customerProps,
      parent_id: Type.Optional(Type.Union([Id, Type.Null()])),
      level: Type.Optional(Type.Integer()),
      // a department billed through its parent's Paddle customer; default: when its email
      // is its parent's (Paddle's customer emails are unique)
      bill_to_parent: Type.Optional(Type.Boolean()),
    },
    strict,
  ),
  update: partialUpdate({
    ...customerProps,
    email: Email,
    parent_id: Type.Union([Id, Type.Null()]),
    bill_to_parent: Type.Boolean(),
  }),
  json: ['custom_data'],
  bool: ['marketing_consent', 'bill_to_parent'],
  // a department billed through its parent has no Paddle customer of its own
  billedThrough: (r) => (r.bill_to_parent ? String(r.parent_id) : null),
  // a customer moved under another parent (another MSP), or an unplaced one filed: its
  // tree takes that MSP's margin
  marginScope: (row, before) =>
    before && (before.parent_id !== row.parent_id || before.level !== row.level)
      ? String(row.id)
      : null,
  prepare(db, c, existing) {
    const parentId = (c.parent_id === undefined ? existing?.parent_id : c.parent_id) as
      string | null | undefined
    if (existing && c.level !== undefined && c.level !== existing.level) {
      throw claError(
        'CLA_ERR_BILLING_HIERARCHY',
        'a customer keeps its level (1 MSP, 2 customer, 3 department)',
        {
          details: { id: existing.id },
        },
      )
    }
    let level: number
    if (existing?.level === 0 && c.parent_id === undefined) {
      // unplaced (made at Paddle) and not being filed: it stays unplaced
      level = 0
    } else if (!parentId) {
      level = 1
    } else {
      const parent = db.prepare('SELECT id, level FROM customers WHERE id = ?').get(parentId) as
        { id: string; level: number } | undefined
      if (!parent)
        throw claError('CLA_ERR_BILLING_HIERARCHY', `parent customer ${parentId} does not exist`, {
          details: { parent_id: parentId },
        })
      if (parent.level === 0) {
        throw claError(
          'CLA_ERR_BILLING_HIERARCHY',
          `customer ${parentId} is unplaced (made at Paddle); file it first (update its parent_id), an unplaced customer has no children`,
          { details: { parent_id: parentId, level: 0 } },
        )
      }
      if (parent.level >= 3) {
        throw claError(
          'CLA_ERR_BILLING_HIERARCHY',
          `customer ${parentId} is a department (level 3); a department has no children`,
          {
            details: { parent_id: parentId, level: parent.level + 1 },
          },
        )
      }
      if (existing) {
        const chain = ancestors(db, parentId)
        if (chain.some((a) => a.id === existing.id)) {
          throw claError(
            'CLA_ERR_BILLING_HIERARCHY',
            `moving ${existing.id} under ${parentId} would make a cycle`,
            {
              details: { id: existing.id, parent_id: parentId },
            },
          )
        }
      }
      level = parent.level + 1
    }
    // an unplaced customer takes the level of the place it is filed at, once
    const filing = existing?.level === 0
    const wanted = c.level ?? (filing ? undefined : existing?.level)
    if (wanted !== undefined && wanted !== level) {
      throw claError(
        'CLA_ERR_BILLING_HIERARCHY',
        `level must be ${level} (parent level + 1; 1 MSP, 2 customer, 3 department), got ${String(wanted)}`,
        {
          details: { level: wanted, expected: level },
        },
      )
    }
    billToParent(db, c, existing, level, parentId ?? null)
    if (c.parent_id !== undefined || !existing) c.parent_id = parentId ?? null
    if (!existing || (filing && level !== 0)) c.level = level
    else delete c.level
  },
  collection: () => '/customers',
  item: (_r, _c, pid) => `/customers/${pid}`,
  toPaddle: (r, _ctx, op) =>
    clean({
      email: r.email,
      name: r.name,
      locale: r.locale,
      custom_data: customData(r, {
        clavitor_level: r.level,
        ...(r.parent_id ? { clavitor_parent_id: r.parent_id } : {}),
      }),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o) => ({
    email: str(o.email),
    name: str(o.name),
    locale: str(o.locale) ?? 'en',
    marketing_consent: bool(o.marketing_consent),
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  paddleOwned: ['marketing_consent'],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
  // A customer's children are the customers under it.
  customerColumn: 'parent_id',
  async recoverCreate(p, row, err) {
    // Paddle refuses a second customer with one email (409 customer_already_exists).
    if (paddleDetails(err)?.code !== 'customer_already_exists') throw err
    return adoptCustomer(p, row, err as ClavitorError)
  },
  mirror(cols) {
    // Created at Paddle directly: unplaced (level 0: not an MSP, no margin, no children)
    // until someone files it (update parent_id: null for an MSP, or its parent).
    cols.level = 0
    cols.parent_id = null
    cols.email = cols.email ?? 'unknown@invalid'
  },
}

const sameEmail = (a: unknown, b: unknown): boolean =>
  typeof a === 'string' && typeof b === 'string' && a.toLowerCase() === b.toLowerCase()

/**
 * Whether a department is billed through its parent's Paddle customer (docs/billing.md
 * "Departments billed through their parent"). Paddle's customer emails are unique: a
 * department with its parent's email cannot be a Paddle customer of its own, so it is
 * billed through the parent unless told otherwise (which is refused: it would fail at
 * Paddle forever). Chosen at creation; a department billed through its parent moves to
 * another parent only while nothing of it is at Paddle under the old one.
 */
function billToParent(
  db: Db,
  c: Record<string, unknown>,
  existing: Row | undefined,
  level: number,
  parentId: string | null,
): void {
  const given = c.bill_to_parent === undefined ? undefined : c.bill_to_parent === 1
  const parentEmail = parentId
    ? (db.prepare('SELECT email FROM customers WHERE id = ?').pluck().get(parentId) as string)
    : undefined
  const conflict = (message: string, details: Record<string, unknown>): never => {
    throw claError('CLA_ERR_BILLING_CONFLICT', message, { details })
  }
  if (!existing) {
    if (given === true && level !== 3) {
      throw claError(
        'CLA_ERR_BILLING_HIERARCHY',
        `only a department (level 3) is billed through its parent; this customer would be level ${level}`,
        { details: { field: 'bill_to_parent', level } },
      )
    }
    const shares = level === 3 && sameEmail(c.email, parentEmail)
    if (given === false && shares) {
      conflict(
        `email ${String(c.email)} is the parent's, and Paddle's customer emails are unique: bill this department through its parent (bill_to_parent: true, the default) or give it its own email`,
        { field: 'email', parent_id: parentId },
      )
    }
    c.bill_to_parent = (given ?? shares) ? 1 : 0
    return
  }
  const was = existing.bill_to_parent === 1
  if (given !== undefined && given !== was) {
    conflict(
      `bill_to_parent is chosen when a department is created (it is ${String(was)} for ${existing.id}): Paddle cannot move subscriptions between customers`,
      { field: 'bill_to_parent', id: existing.id },
    )
  }
  delete c.bill_to_parent
  if (!was && level === 3 && c.email !== undefined && sameEmail(c.email, parentEmail)) {
    conflict(
      `${existing.id} has a Paddle customer of its own, and Paddle's customer emails are unique: it cannot take its parent's email ${String(c.email)}`,
      { field: 'email', id: existing.id, parent_id: parentId },
    )
  }
  if (was && parentId !== existing.parent_id) {
    const atPaddle = ['addresses', 'businesses', 'transactions', 'subscriptions'].find((t) =>
      db.prepare(`SELECT 1 FROM ${t} WHERE customer_id = ? LIMIT 1`).get(existing.id),
    )
    if (atPaddle) {
      conflict(
        `${existing.id} is billed through its parent ${String(existing.parent_id)}, and its ${atPaddle} are at Paddle under that customer (Paddle cannot move them): it cannot move`,
        { id: existing.id, parent_id: parentId, entity: atPaddle },
      )
    }
  }
}

/** 409 customer_already_exists: adopt the existing customer unless another row of ours owns it. */
async function adoptCustomer(p: PushCtx, row: Row, err: ClavitorError): Promise<PaddleObj> {
  const d = paddleDetails(err)
  const m = /ctm_[a-z0-9]{26}/.exec(d?.detail ?? '')
  if (!m) throw err
  const existing = (await p.paddle.get<PaddleObj>(`/customers/${m[0]}`)).data
  const owner = (existing.custom_data as Record<string, unknown> | null | undefined)?.[
    CUSTOM_ID_KEY
  ]
  if (owner && owner !== row.id) {
    throw claError(
      'CLA_ERR_BILLING_CONFLICT',
      `email ${String(row.email)} belongs to Paddle customer ${m[0]}, which is our ${String(owner)}`,
      {
        cause: err,
        details: { paddle_id: m[0], owner },
      },
    )
  }
  return (
    await p.paddle.patch<PaddleObj>(`/customers/${m[0]}`, customers.toPaddle(row, p.map, 'update'))
  ).data
}

// --- addresses / businesses --------------------------------------------------------------
const addressProps = {
  description: Type.Optional(Text(200)),
  first_line: Type.Optional(Text(200)),
  second_line: Type.Optional(Text(200)),
  city: Type.Optional(Text(200)),
  postal_code: Type.Optional(Text(40)),
  region: Type.Optional(Text(200)),
  custom_data: Type.Optional(CustomData),
}

/**
 * Addresses and businesses live under their customer at Paddle (and must have one here):
 * the same check and the same URLs, only the collection name differs.
 */
function underCustomer(
  sub: 'addresses' | 'businesses',
): Pick<EntitySpec, 'prepare' | 'collection' | 'item'> {
  return {
    prepare(db, c, existing) {
      if (!existing) requireRow(db, 'customers', c.customer_id, 'customer_id')
    },
    collection: (r, ctx) =>
      `/customers/${ctx.paddleIdOf('customers', String(r.customer_id))}/${sub}`,
    item: (r, ctx, pid) =>
      `/customers/${ctx.paddleIdOf('customers', String(r.customer_id))}/${sub}/${pid}`,
  }
}

export const addresses: EntitySpec = {
  name: 'addresses',
  table: 'addresses',
  prefix: 'adr',
  paddlePrefix: 'add',
  eventName: 'address',
  create: Type.Object({ customer_id: Id, country_code: Country, ...addressProps }, strict),
  update: partialUpdate({ ...addressProps, country_code: Country }),
  json: ['custom_data'],
  bool: [],
  ...underCustomer('addresses'),
  toPaddle: (r, ctx, op) =>
    clean({
      description: r.description,
      first_line: r.first_line,
      second_line: r.second_line,
      city: r.city,
      postal_code: r.postal_code,
      region: r.region,
      country_code: r.country_code,
      custom_data: customData(r, customerCustomData(ctx, r.customer_id)),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o, ctx) => ({
    customer_id: customerFromPaddle(o, ctx),
    description: str(o.description),
    first_line: str(o.first_line),
    second_line: str(o.second_line),
    city: str(o.city),
    postal_code: str(o.postal_code),
    region: str(o.region),
    country_code: str(o.country_code) ?? 'ZZ',
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  webhookFixed: ['customer_id'],
  mirrorNeeds: ['customer_id'],
  paddleOwned: [],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
  customerColumn: 'customer_id',
}

const Contact = Type.Object({ name: Type.Optional(Text(200)), email: Email }, strict)
const businessProps = {
  company_number: Type.Optional(Text(100)),
  tax_identifier: Type.Optional(Text(100)),
  contacts: Type.Optional(Type.Array(Contact, { maxItems: 50 })),
  custom_data: Type.Optional(CustomData),
}
export const businesses: EntitySpec = {
  name: 'businesses',
  table: 'businesses',
  prefix: 'bus',
  paddlePrefix: 'biz',
  eventName: 'business',
  create: Type.Object({ customer_id: Id, name: Text(200), ...businessProps }, strict),
  update: partialUpdate({ ...businessProps, name: Text(200) }),
  json: ['custom_data', 'contacts'],
  bool: [],
  ...underCustomer('businesses'),
  toPaddle: (r, ctx, op) =>
    clean({
      name: r.name,
      company_number: r.company_number,
      tax_identifier: r.tax_identifier,
      contacts: parseJson(r.contacts),
      custom_data: customData(r, customerCustomData(ctx, r.customer_id)),
      ...(op === 'update' ? { status: r.status } : {}),
    }),
  fromPaddle: (o, ctx) => ({
    customer_id: customerFromPaddle(o, ctx),
    name: str(o.name) ?? '',
    company_number: str(o.company_number),
    tax_identifier: str(o.tax_identifier),
    contacts: o.contacts ? JSON.stringify(o.contacts) : null,
    status: str(o.status) ?? 'active',
    custom_data: userCustomData(o.custom_data),
  }),
  webhookFixed: ['customer_id'],
  mirrorNeeds: ['customer_id'],
  paddleOwned: [],
  perPage: 200,
  findStatus: ACTIVE_AND_ARCHIVED,
  customerColumn: 'customer_id',
}
