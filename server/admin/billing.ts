// The one place the admin UI creates billing entities: through the billing layer's
// dual write (our row first, then Paddle), so a row Paddle has not confirmed yet shows
// as "pending" on the pages.
import type { Core } from '../../lib/core.js'
import { claError } from '../../lib/errors.js'

export interface NewCustomer {
  parent_id: string | null
  name: string
  email: string
}

interface BillingCreate {
  create(entity: 'customers', input: Record<string, unknown>): Promise<{ id: string }>
}

export async function createCustomer(core: Core, input: NewCustomer): Promise<{ id: string }> {
  const billing = (core as unknown as { billing?: BillingCreate }).billing
  if (!billing) throw claError('CLA_ERR_INTERNAL', 'the billing layer is not open on this core')
  const row = await billing.create('customers', {
    ...input,
    ...(input.parent_id ? {} : { parent_id: null }),
  })
  return { id: row.id }
}
