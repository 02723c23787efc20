// Renders docs/openapi.json from the same TypeBox schemas the routes use (server/openapi.ts).
// Run: scripts/clavitor-ts scripts/docs/openapi.ts --write
// test/server/openapi.test.ts fails when the committed file differs from this rendering.
import { writeFileSync } from 'node:fs'
import { buildOpenApi } from '../../server/openapi.js'

export function renderOpenApiJson(): string {
  return JSON.stringify(buildOpenApi(), null, 2) + '\n'
}

if (process.argv.includes('--write')) {
  writeFileSync(new URL('../../docs/openapi.json', import.meta.url), renderOpenApiJson())
}
