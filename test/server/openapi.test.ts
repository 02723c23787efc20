import t from 'tap'
import { readFileSync } from 'node:fs'
import { renderOpenApiJson } from '../../scripts/docs/openapi.js'
import { buildOpenApi } from '../../server/openapi.js'
import { ERRORS } from '../../lib/errors.js'
import { ROUTE_ERRORS } from '../../server/routes/credentials-schemas.js'

t.test('docs/openapi.json is in step with the route schemas', async (t) => {
  const committed = readFileSync(new URL('../../docs/openapi.json', import.meta.url), 'utf8')
  t.equal(
    committed,
    renderOpenApiJson(),
    'regenerate with: scripts/clavitor-ts scripts/docs/openapi.ts --write',
  )
})

t.test('every credentials route is documented with auth, request and responses', async (t) => {
  const doc = buildOpenApi() as { paths: Record<string, Record<string, Record<string, unknown>>> }
  const ops = [
    ['/api/v1/credentials/register', 'post', ROUTE_ERRORS.register],
    ['/api/v1/credentials', 'get', ROUTE_ERRORS.list],
    ['/api/v1/credentials/wl3', 'get', ROUTE_ERRORS.wl3],
    ['/api/v1/credentials/sync', 'get', ROUTE_ERRORS.sync],
    ['/api/v1/vault/status', 'get', ROUTE_ERRORS.vaultStatus],
  ] as const
  for (const [path, method, codes] of ops) {
    const op = doc.paths[path]?.[method]
    t.ok(op, `${method} ${path}`)
    t.same(op!.security, [{ vaultKey: [] }], `${path} needs the key`)
    const responses = op!.responses as Record<string, { description: string }>
    t.ok(responses['200'] ?? responses['201'], `${path} success response`)
    for (const code of codes) {
      const r = responses[String(ERRORS[code].status)]
      t.ok(r?.description.includes(code), `${path} documents ${code}`)
    }
  }
  const body = (
    doc.paths['/api/v1/credentials/register']!.post!.requestBody as {
      content: Record<string, { schema: { properties: { wl3: { maxLength: number } } } }>
    }
  ).content['application/json']!.schema
  t.equal(
    body.properties.wl3.maxLength,
    4 * Math.ceil(65536 / 3),
    'the WL3 limit shows in the schema',
  )
})
