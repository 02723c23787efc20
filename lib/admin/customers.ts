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
