/**
 * Billing: our rows first, Paddle second (the dual write), webhooks applied idempotently,
 * plans and their limits, the subscription's life, MSP margins, reconcile (docs/billing.md).
 * A core opened with `openCore` holds one as `core.billing`.
 *
 * @packageDocumentation
 */
export {
  Billing,
  RECONCILE_INTERVAL_MS,
  type AuditSink,
  type BillingOptions,
  type BillingWorkersOptions,
  type DuplicateGroup,
  type DuplicateReport,
  type Entitlements,
  type EventCursor,
  type EventsPassReport,
  type MarginChange,
  type MarginPlan,
  type MarginReport,
  type MarginSkip,
  type ParkedSnapshot,
  type PendingRow,
  type Plan,
  type PlanCreate,
  type PlanUpdate,
  type PlanUse,
  type PublicRow,
  type ReconcileCounts,
  type ReconcileReport,
  type RetryOptions,
  type RetryReport,
  type RevenueOptions,
  type RevenueRow,
  type SubscriptionAction,
  type WebhookOptions,
  type CustomerNode,
} from '../lib/billing/billing.js'
export { openBilling, paddleConfigFromEnv, type PaddleConfig } from '../lib/billing/config.js'
export { ENTITY_NAMES, type EntityName } from '../lib/billing/entities.js'
export type { DuplicateEntity, DuplicateExtra } from '../lib/billing/duplicates.js'
export type { PaddleClient } from '../lib/billing/paddle-client.js'
export { DUPLICATE_ENTITIES } from '../lib/billing/duplicates.js'
export type { PaddleObject, PaddleResponse } from '../lib/billing/paddle-client.js'
