// TypeBox schemas of the credentials API: the routes validate with them and
// scripts/docs/openapi.ts renders docs/openapi.json from the same objects.
import { Type, type Static } from '@sinclair/typebox'
import { DEFAULT_MAX_WL3_BYTES } from '../../lib/credentials/registry.js'
import { ERRORS, type ErrorCode } from '../../lib/errors.js'

/** The P0 rule of lib/store/p0.ts, as a JSON-schema pattern: lowercase hex, even length, 32 to 128. */
export const P0_PATTERN = '^(?:[0-9a-f]{2}){16,64}$'

export const P0 = Type.String({
  pattern: P0_PATTERN,
  minLength: 32,
  maxLength: 128,
  description: 'Public device identifier: lowercase hex, even length, 32 to 128 characters.',
  examples: ['a3'.repeat(16)],
})

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String({ description: 'Stable error code, see docs/errors.md.' }),
      message: Type.String(),
      details: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
    }),
  },
  { description: 'Every error answer.' },
)

/** Base64 length of n bytes (with padding). */
export function base64Length(bytes: number): number {
  return 4 * Math.ceil(bytes / 3)
}

export function registerBody(maxWl3Bytes = DEFAULT_MAX_WL3_BYTES) {
  return Type.Object(
    {
      p0: P0,
      wl3: Type.String({
        minLength: 4,
        maxLength: base64Length(maxWl3Bytes),
        pattern: '^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{4})$',
        contentEncoding: 'base64',
        description: `The WL3 blob, standard base64 with padding; at most ${maxWl3Bytes} bytes decoded.`,
      }),
    },
    { additionalProperties: false },
  )
}
export type RegisterBody = Static<ReturnType<typeof registerBody>>

/** Optional request header of the register route (lib/credentials/registry.ts checkIdempotencyKey). */
export const RegisterHeaders = Type.Object({
  'idempotency-key': Type.Optional(
    Type.String({
      pattern: '^[\\x21-\\x7e]{1,255}$',
      description:
        'A key per registration (a UUID, say): a retry with the same key answers the first registration instead of adding a version.',
    }),
  ),
})

export const Registered = Type.Object(
  {
    p0: P0,
    vault_id: Type.String(),
    version: Type.Integer({
      minimum: 1,
      description: 'Version number of this WL3 for the P0 (1 = first).',
    }),
    seq: Type.Integer({ description: 'Store sequence number of the blob.' }),
    created_at: Type.Integer({ description: 'µs since the Unix epoch, assigned by the store.' }),
    sha256: Type.String({
      pattern: '^[0-9a-f]{64}$',
      description: 'sha256 of the WL3, lowercase hex.',
    }),
    size: Type.Integer({ description: 'WL3 size in bytes.' }),
    path: Type.String({ description: 'The .cla path relative to the store root.' }),
    replayed: Type.Boolean({
      description:
        'True when the Idempotency-Key matched an earlier registration of this vault: this is that registration, nothing new was stored.',
    }),
  },
  { additionalProperties: false },
)

const Limit = Type.Integer({
  minimum: 1,
  maximum: 1000,
  default: 100,
  description: 'Page size (1 to 1000, default 100).',
})
const After = Type.String({
  maxLength: 128,
  pattern: '^[0-9a-f]*$',
  description: 'Paging: the `next` value of the previous page (a P0); items after it.',
})

export const ListQuery = Type.Object(
  {
    customer: Type.String({
      minLength: 1,
      maxLength: 200,
      description: "Must be the API key's customer id.",
    }),
    limit: Type.Optional(Limit),
    after: Type.Optional(After),
  },
  { additionalProperties: false },
)
export type ListQuery = Static<typeof ListQuery>

export const CredentialSummary = Type.Object(
  {
    p0: P0,
    vault_id: Type.String({ description: 'Vault of the latest version.' }),
    versions: Type.Integer({ minimum: 1 }),
    first_registered_at: Type.Integer({ description: 'µs epoch.' }),
    latest: Type.Object({
      version: Type.Integer({ minimum: 1 }),
      seq: Type.Integer(),
      created_at: Type.Integer(),
      sha256: Type.String(),
      size: Type.Integer(),
      path: Type.String(),
    }),
  },
  { additionalProperties: false },
)

export const ListResponse = Type.Object(
  {
    items: Type.Array(CredentialSummary),
    next: Type.Union([Type.String(), Type.Null()], {
      description: 'Pass as `after` for the next page; null on the last.',
    }),
  },
  { additionalProperties: false },
)

export const Wl3Query = Type.Object(
  {
    p0: P0,
    version: Type.Optional(
      Type.Integer({ minimum: 1, description: 'A version number; default the latest.' }),
    ),
  },
  { additionalProperties: false },
)
export type Wl3Query = Static<typeof Wl3Query>

export const Wl3Binary = Type.String({
  format: 'binary',
  description: 'The raw WL3 bytes (application/octet-stream).',
})

export const SyncQuery = Type.Object(
  { limit: Type.Optional(Limit), after: Type.Optional(After) },
  { additionalProperties: false },
)
export type SyncQuery = Static<typeof SyncQuery>

export const SyncResponse = Type.Object(
  {
    pops: Type.Array(
      Type.Object({
        id: Type.String(),
        name: Type.Union([Type.String(), Type.Null()]),
        cursor_created_at: Type.Union([Type.Integer(), Type.Null()], {
          description: "created_at of the POP's cursor.",
        }),
        cursor_seq: Type.Union([Type.Integer(), Type.Null()]),
        last_success_at: Type.Union([Type.Integer(), Type.Null()]),
        lag_us: Type.Union([Type.Integer(), Type.Null()]),
      }),
      { description: 'Active POPs and the position each one reported.' },
    ),
    items: Type.Array(
      Type.Object({
        p0: P0,
        version: Type.Integer({ minimum: 1, description: 'Latest version.' }),
        seq: Type.Integer(),
        created_at: Type.Integer(),
        held_by: Type.Array(Type.String(), { description: 'POP ids holding the latest version.' }),
        missing_on: Type.Array(Type.String(), { description: 'POP ids not holding it yet.' }),
      }),
    ),
    next: Type.Union([Type.String(), Type.Null()]),
  },
  { additionalProperties: false },
)

const NullableText = Type.Union([Type.String(), Type.Null()])

export const VaultStatusResponse = Type.Object(
  {
    vault: Type.Object(
      { id: Type.String(), name: Type.String(), customer_id: Type.String() },
      { additionalProperties: false },
    ),
    subscription: Type.Union(
      [
        Type.Object(
          {
            id: Type.String(),
            status: Type.String({
              description: "Paddle's status: active, trialing, past_due, paused, canceled.",
            }),
            collection_mode: Type.String({ description: 'automatic (card) or manual (invoice).' }),
            current_period_starts_at: NullableText,
            current_period_ends_at: NullableText,
            next_billed_at: NullableText,
            canceled_at: NullableText,
            paused_at: NullableText,
            scheduled_change: Type.Union(
              [Type.Object({}, { additionalProperties: true }), Type.Null()],
              {
                description:
                  'A change Paddle will make ({action: cancel | pause | resume, effective_at, resume_at}), or null.',
              },
            ),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: 'Null when the vault has no subscription (it cannot register).' },
    ),
    active: Type.Boolean({
      description: 'The subscription lets the vault register (active or trialing).',
    }),
    plans: Type.Array(
      Type.Object(
        { id: Type.String(), name: Type.String(), quantity: Type.Integer({ minimum: 1 }) },
        { additionalProperties: false },
      ),
      {
        description: "The plans the subscription's items sell; empty: no plan, no limits enforced.",
      },
    ),
    limits: Type.Object(
      {
        max_vaults: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
          description: 'Vaults the subscription pays for; null = no limit.',
        }),
        max_devices_per_vault: Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
          description: 'Devices (P0s) each vault may enrol; null = no limit.',
        }),
      },
      { additionalProperties: false },
    ),
    usage: Type.Object(
      {
        vaults: Type.Integer({ minimum: 0, description: 'Vaults on this subscription.' }),
        devices: Type.Integer({ minimum: 0, description: 'Devices (P0s) enrolled in this vault.' }),
      },
      { additionalProperties: false },
    ),
    can_enrol_device: Type.Boolean({
      description:
        'A new device may be enrolled now (active and under the device limit). New versions of enrolled devices are never refused for a limit.',
    }),
  },
  { additionalProperties: false },
)

const KEY_ERRORS = [
  'CLA_ERR_API_KEY_MISSING',
  'CLA_ERR_API_KEY_INVALID',
  'CLA_ERR_API_KEY_REVOKED',
] as const
const COMMON = [
  'CLA_ERR_INVALID_INPUT',
  ...KEY_ERRORS,
  'CLA_ERR_CREDENTIAL_RATE_LIMITED',
  'CLA_ERR_INTERNAL',
] as const

/** The error codes each route can answer (all with ErrorBody), for the schemas and the docs. */
export const ROUTE_ERRORS: Record<
  'register' | 'list' | 'wl3' | 'sync' | 'vaultStatus',
  readonly ErrorCode[]
> = {
  register: [
    ...COMMON,
    'CLA_ERR_INVALID_P0',
    'CLA_ERR_P0_RESERVED',
    'CLA_ERR_PAYLOAD_TOO_LARGE',
    'CLA_ERR_UNSUPPORTED_MEDIA_TYPE',
    'CLA_ERR_SUBSCRIPTION_INACTIVE',
    'CLA_ERR_PLAN_DEVICE_LIMIT',
    'CLA_ERR_CREDENTIAL_P0_TAKEN',
    'CLA_ERR_IDEMPOTENCY_CONFLICT',
    'CLA_ERR_NOT_FOUND',
    'CLA_ERR_AUDIT_WRITE_FAILED',
  ],
  list: [...COMMON, 'CLA_ERR_CREDENTIAL_FORBIDDEN'],
  wl3: [...COMMON, 'CLA_ERR_INVALID_P0', 'CLA_ERR_P0_RESERVED', 'CLA_ERR_NOT_FOUND'],
  sync: [...COMMON],
  vaultStatus: [...COMMON],
}

/** The HTTP statuses of a list of codes, ascending, each once. */
export function statusesOf(codes: readonly ErrorCode[]): number[] {
  return [...new Set(codes.map((c) => ERRORS[c].status))].sort((a, b) => a - b)
}

/** Fastify `response` entries: ErrorBody for every status the codes answer with. */
export function errorResponses(codes: readonly ErrorCode[]): Record<number, typeof ErrorBody> {
  return Object.fromEntries(statusesOf(codes).map((s) => [s, ErrorBody]))
}
