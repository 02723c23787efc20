/**
 * A POP's Fastify app (latest-WL3 lookups for vaults) as a factory over an opened POP
 * (`openPop` of the root entry). It does not listen: call `app.listen()` yourself.
 *
 * @packageDocumentation
 */
export { buildPopApp, type PopAppOptions } from '../pop-agent/app.js'
export type { MetricsExposure } from '../http/metrics.js'
export type { TrustProxy } from '../lib/auth/trust-proxy.js'
