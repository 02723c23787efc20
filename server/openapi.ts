// The core's OpenAPI document, assembled from the same TypeBox schemas the routes
// validate with (server/routes/credentials-schemas.ts). Served at GET /api/v1/openapi.json
// and written to docs/openapi.json by `scripts/clavitor-ts scripts/docs/openapi.ts --write`;
// test/server/openapi.test.ts fails when the two drift.
import type { FastifyPluginAsync } from 'fastify'
import type { TObject, TSchema } from '@sinclair/typebox'
import { ERRORS, type ErrorCode } from '../lib/errors.js'
import { DEFAULT_MAX_WL3_BYTES } from '../lib/credentials/registry.js'
import {
  ROUTE_ERRORS,
  statusesOf,
  ErrorBody,
  ListQuery,
  ListResponse,
  Registered,
  SyncQuery,
  SyncResponse,
  VaultStatusResponse,
  Wl3Binary,
  Wl3Query,
  registerBody,
} from './routes/credentials-schemas.js'
import { ADMIN_API_ROUTES } from './admin/api-schemas.js'

/** Plain JSON of a TypeBox schema (drops TypeBox's symbol keys). */
function json(schema: TSchema): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema)) as Record<string, unknown>
}

function queryParams(schema: TObject): unknown[] {
  const required = new Set(schema.required ?? [])
  return Object.entries(schema.properties).map(([name, s]) => {
    const { description, ...rest } = json(s)
    return {
      name,
      in: 'query',
      required: required.has(name),
      ...(description ? { description } : {}),
      schema: rest,
    }
  })
}

function errors(codes: readonly ErrorCode[]): Record<string, unknown> {
  return Object.fromEntries(
    statusesOf(codes).map((s) => [
      String(s),
      {
        description:
          'Error; code: ' +
          codes
            .filter((c) => ERRORS[c].status === s)
            .map((c) => `\`${c}\``)
            .join(', ') +
          ' (docs/errors.md)' +
          (s === 429 ? '; with a Retry-After header (seconds)' : ''),
        content: { 'application/json': { schema: { $ref: '#/components/schemas/ErrorBody' } } },
        ...(s === 429
          ? {
              headers: {
                'Retry-After': { schema: { type: 'integer' }, description: 'Seconds to wait.' },
              },
            }
          : {}),
      },
    ]),
  )
}

const security = [{ vaultKey: [] }]

/** The JSON admin API's paths, from the same route table server/admin/api.ts registers. */
function adminApiPaths(): Record<string, Record<string, unknown>> {
  const paths: Record<string, Record<string, unknown>> = {}
  for (const r of ADMIN_API_ROUTES) {
    const path = `/admin/api/v1${r.url.replace(/:(\w+)/g, '{$1}')}`
    const params =
      'params' in r ? [{ name: 'id', in: 'path', required: true, schema: { type: 'string' } }] : []
    const query = 'query' in r ? queryParams(r.query as TObject) : []
    paths[path] = {
      ...paths[path],
      [r.method.toLowerCase()]: {
        operationId: r.operationId,
        summary: r.summary,
        tags: ['admin'],
        security: [{ adminToken: [] }],
        ...(params.length + query.length ? { parameters: [...params, ...query] } : {}),
        ...('body' in r && r.body
          ? {
              requestBody: {
                required: true,
                content: { 'application/json': { schema: json(r.body) } },
              },
            }
          : {}),
        responses: {
          [String(r.status)]: {
            description: 'OK.',
            content: { 'application/json': { schema: json(r.response) } },
          },
          ...errors(r.errors),
        },
      },
    }
  }
  return paths
}

/**
 * The OpenAPI 3.1 document of the credentials API and the admin API, with the WL3 size limit
 * `maxWl3Bytes` (default 65536) written into it.
 */
export function buildOpenApi(opts: { maxWl3Bytes?: number } = {}): Record<string, unknown> {
  const max = opts.maxWl3Bytes ?? DEFAULT_MAX_WL3_BYTES
  return {
    openapi: '3.1.0',
    info: {
      title: 'Clavitor core API',
      version: '1',
      description:
        'Credentials API of the Clavitor core: vaults register P0 → WL3 and read them back. ' +
        'Authenticate with a per-vault API key (`Authorization: Bearer clv_<id>_<secret>`). ' +
        'Errors are `{"error": {"code", "message", "details"?}}` with the codes of docs/errors.md. ' +
        'Rate limit: per API key, default 120 requests a minute (429 with Retry-After).',
    },
    servers: [{ url: '/' }],
    components: {
      securitySchemes: {
        adminToken: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'cla_adm_<16 hex id>_<43 base64url secret>',
          description:
            "A per-admin API token (the admin UI's API tokens page, shown once): acts as its admin, with their role and scope. Admin API rate limit: 300 requests a minute per token.",
        },
        vaultKey: {
          type: 'http',
          scheme: 'bearer',
          bearerFormat: 'clv_<16 hex id>_<64 hex secret>',
          description:
            'A vault API key, shown once when created (`clavitor vault key` or the admin UI).',
        },
      },
      schemas: { ErrorBody: json(ErrorBody) },
    },
    paths: {
      '/api/v1/credentials/register': {
        post: {
          operationId: 'registerCredential',
          summary: 'Register a WL3 for a P0 (a new P0, or a new version of a known one)',
          description:
            `The WL3 is stored as a sealed .cla in the WORM store. At most ${max} bytes decoded; ` +
            "the vault's subscription must be active or trialing; a P0 registered by another customer is refused.",
          security,
          requestBody: {
            required: true,
            content: { 'application/json': { schema: json(registerBody(max)) } },
          },
          responses: {
            '201': {
              description: 'Registered.',
              content: { 'application/json': { schema: json(Registered) } },
            },
            ...errors(ROUTE_ERRORS.register),
          },
        },
      },
      '/api/v1/credentials': {
        get: {
          operationId: 'listCredentials',
          summary: "List the key's customer's credentials (metadata only, one entry per P0, by P0)",
          security,
          parameters: queryParams(ListQuery),
          responses: {
            '200': {
              description: 'A page of credentials.',
              content: { 'application/json': { schema: json(ListResponse) } },
            },
            ...errors(ROUTE_ERRORS.list),
          },
        },
      },
      '/api/v1/credentials/wl3': {
        get: {
          operationId: 'getWl3',
          summary: 'Download the WL3 of a P0: the latest version, or `version`',
          security,
          parameters: [
            ...queryParams(Wl3Query),
            {
              name: 'If-None-Match',
              in: 'header',
              required: false,
              schema: { type: 'string' },
              description: 'An ETag from a previous answer.',
            },
          ],
          responses: {
            '200': {
              description: 'The raw WL3 bytes.',
              headers: {
                ETag: { schema: { type: 'string' }, description: 'The WL3 sha256 in quotes.' },
                'X-Clavitor-Version': {
                  schema: { type: 'integer' },
                  description: 'Version served.',
                },
                'X-Clavitor-Versions': {
                  schema: { type: 'integer' },
                  description: 'Number of versions.',
                },
                'X-Clavitor-Seq': {
                  schema: { type: 'integer' },
                  description: 'Store sequence number.',
                },
              },
              content: { 'application/octet-stream': { schema: json(Wl3Binary) } },
            },
            '304': { description: 'Not modified (If-None-Match matched the ETag).' },
            ...errors(ROUTE_ERRORS.wl3),
          },
        },
      },
      '/api/v1/credentials/sync': {
        get: {
          operationId: 'credentialsSyncStatus',
          summary: "Which POPs hold the latest version of each of the key's customer's P0s",
          security,
          parameters: queryParams(SyncQuery),
          responses: {
            '200': {
              description: 'POP positions and per-P0 status.',
              content: { 'application/json': { schema: json(SyncResponse) } },
            },
            ...errors(ROUTE_ERRORS.sync),
          },
        },
      },
      '/api/v1/vault/status': {
        get: {
          operationId: 'vaultStatus',
          summary:
            "The key's vault: its subscription (status, period, scheduled change), plan, limits and usage",
          security,
          responses: {
            '200': {
              description:
                'What the vault needs to show "your subscription ends on …" or "3 of 5 devices" without billing logic of its own.',
              content: { 'application/json': { schema: json(VaultStatusResponse) } },
            },
            ...errors(ROUTE_ERRORS.vaultStatus),
          },
        },
      },
      ...adminApiPaths(),
      '/api/v1/openapi.json': {
        get: {
          operationId: 'openapi',
          summary: 'This document',
          responses: {
            '200': { description: 'The OpenAPI document.', content: { 'application/json': {} } },
          },
        },
      },
    },
  }
}

/** Serves the document; registered by server/app.ts. */
export const openApiRoute: FastifyPluginAsync<{ maxWl3Bytes?: number }> = async (app, opts) => {
  const doc = buildOpenApi(opts)
  app.get('/api/v1/openapi.json', async () => doc)
}
