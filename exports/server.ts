/**
 * The core's Fastify apps as factories over an opened core: the credentials API, admin UI
 * and Paddle webhook (`buildCoreApp`), and the mTLS POP sync API (`buildPopApiApp`).
 * They do not listen: call `app.listen()` yourself (docs/operations.md, docs/api.md).
 *
 * @packageDocumentation
 */
export { buildCoreApp, type CoreAppOptions } from '../server/app.js'
export {
  buildPopApiApp,
  popApiTlsFromCa,
  type PopApiOptions,
  type PopApiTls,
} from '../server/pop-api.js'
export { buildOpenApi } from '../server/openapi.js'
export type { AdminRoutesOptions } from '../server/admin/routes.js'
export type { AdminApiOptions } from '../server/admin/api.js'
export type { CredentialsRoutesOptions } from '../server/routes/credentials.js'
