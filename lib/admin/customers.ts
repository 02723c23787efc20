// Admin actions on the customer hierarchy. The hierarchy rules (MSP → customer →
// department, a department has no children) are the billing layer's; this adds the
// admin's permission check and the audit event around its dual write.
import type { Billing, PublicRow } from '../billing/billing.js'
import { claError } from '../errors.js'
import type { Actor, Admin, RequestFacts } from './admin.js'

export interface NewCustomerInput {
  /** Parent customer id; empty/undefined creates an MSP (level 1). */
  parentId?: string | null
  name: string
  email: string
}

/**
 * Creates an MSP, a customer under an MSP or a department under a customer, through
 * Billing.create (our row first, then Paddle; the row comes back "pending" if Paddle did
 * not confirm). Needs the 'change' permission; every attempt is an 'admin.action' event.
 */
export async function createCustomer(
  admin: Admin,
  billing: Billing,
  actor: Actor,
  input: NewCustomerInput,
  facts: Partial<RequestFacts> = {},
): Promise<PublicRow> {
  const parentId = input.parentId ? input.parentId : null
  const name = typeof input.name === 'string' ? input.name.trim() : ''
  const email = typeof input.email === 'string' ? input.email.trim() : ''
  return admin.performAsync(
    actor,
    'customer.create',
    'change',
    facts,
    { parentId, name },
    async () => {
      if (!name)
        throw claError('CLA_ERR_INVALID_INPUT', 'name is required', { details: { field: 'name' } })
      return billing.create('customers', { parent_id: parentId, name, email })
    },
  )
}

export interface MspMarginInput {
  mspId: string
  /** Shown at Paddle and on invoices. */
  description: string
  /** Percentage "0.01" to "100" (at most two decimals). */
  percentage: string
}

/**
 * Sets an MSP's margin: a recurring percentage discount applied to its customers'
 * subscriptions (one per MSP; the billing layer refuses a second or a non-MSP), created
 * through the dual write. Needs 'change'; audited as 'discount.create'.
 */
export async function createMspMargin(
  admin: Admin,
  billing: Billing,
  actor: Actor,
  input: MspMarginInput,
  facts: Partial<RequestFacts> = {},
): Promise<PublicRow> {
  const description = typeof input.description === 'string' ? input.description.trim() : ''
  const percentage = typeof input.percentage === 'string' ? input.percentage.trim() : ''
  return admin.performAsync(
    actor,
    'discount.create',
    'change',
    facts,
    { mspId: input.mspId, percentage },
    async () => {
      if (!description) {
        throw claError('CLA_ERR_INVALID_INPUT', 'description is required', {
          details: { field: 'description' },
        })
      }
      return billing.create('discounts', {
        msp_id: input.mspId,
        description,
        type: 'percentage',
        amount: percentage,
        recur: true,
      })
    },
  )
}
