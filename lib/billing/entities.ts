// The registry of billing entities that drives the one dual-write mechanism: each
// description (entities-customers.ts, entities-catalog.ts, entities-sales.ts,
// entities-subscriptions.ts; the contract in entity-spec.ts) gives the table, our id
// prefix, the input schemas, extra checks, how a row maps to Paddle and back, and the hooks
// where an entity differs from the common flow. Adding an entity is one more description
// and one line here, never another copy of the flow.
import { claError } from '../errors.js'
import { ENTITY_NAMES, type EntityName, type EntitySpec } from './entity-spec.js'
import { discounts, prices, products } from './entities-catalog.js'
import { addresses, businesses, customers } from './entities-customers.js'
import { adjustments, transactions } from './entities-sales.js'
import { subscriptions } from './entities-subscriptions.js'

export { ENTITY_NAMES } from './entity-spec.js'
export type { EntityName, EntitySpec, MapCtx, PaddleObj, Row } from './entity-spec.js'
export { parseJson } from './mapping.js'
export { ancestors, mspDiscountFor } from './references.js'
export { Money } from './schemas.js'
export { DEFAULT_BILLING_DETAILS } from './entities-sales.js'

export const ENTITIES: Record<EntityName, EntitySpec> = {
  products,
  prices,
  customers,
  discounts,
  addresses,
  businesses,
  transactions,
  subscriptions,
  adjustments,
}

export function entitySpec(name: string): EntitySpec {
  const spec = (ENTITIES as Record<string, EntitySpec | undefined>)[name]
  if (!spec) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `unknown billing entity "${name}"; one of ${ENTITY_NAMES.join(', ')}`,
      {
        details: { entity: name },
      },
    )
  }
  return spec
}

export function entityForPaddleId(paddleId: string): EntitySpec | undefined {
  const prefix = paddleId.split('_')[0]
  return Object.values(ENTITIES).find((s) => s.paddlePrefix === prefix)
}
