// TypeBox pieces the entity input schemas share: money as minor-unit strings, ISO codes,
// ids, free text, and the "any subset of the create fields" shape of an update.
import { Type, type TSchema } from '@sinclair/typebox'
import { Value } from '@sinclair/typebox/value'

export const Money = Type.String({
  pattern: '^(0|[1-9][0-9]{0,17})$',
  description: 'must be a string of minor-unit digits, e.g. "1200" for 12.00',
})
export const Currency = Type.String({
  pattern: '^[A-Z]{3}$',
  description: 'must be an ISO 4217 code in capitals, e.g. "EUR"',
})
export const Country = Type.String({
  pattern: '^[A-Z]{2}$',
  description: 'must be an ISO 3166 alpha-2 code in capitals, e.g. "DE"',
})
export const Id = Type.String({ minLength: 1, maxLength: 64 })
export const Text = (max = 500) => Type.String({ maxLength: max })
export const CustomData = Type.Record(Type.String(), Type.Unknown())
export const Status = Type.String({ minLength: 1, maxLength: 40 }) // any value: Paddle adds enums
export const Interval = Type.Union([
  Type.Literal('day'),
  Type.Literal('week'),
  Type.Literal('month'),
  Type.Literal('year'),
])
export const Email = Type.String({
  pattern: '^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$',
  maxLength: 320,
  description: 'must be an email address',
})
export const strict = { additionalProperties: false }

export function partialUpdate(props: Record<string, TSchema>): TSchema {
  const opt: Record<string, TSchema> = {}
  for (const [k, v] of Object.entries(props)) opt[k] = Type.Optional(v)
  return Type.Object({ ...opt, status: Type.Optional(Status) }, { ...strict, minProperties: 1 })
}

export const Item = Type.Object(
  { price_id: Id, quantity: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })) },
  strict,
)
export const BillingDetails = Type.Record(Type.String(), Type.Unknown())

/**
 * A failed check's errors as a person can act on them: at most 10, each a path and a
 * message; a field's own `description` says what to fix better than "Expected string to
 * match …", so it wins when the field was given.
 */
export function schemaErrors(
  schema: TSchema,
  input: unknown,
): Array<{ path: string; message: string }> {
  return [...Value.Errors(schema, input)].slice(0, 10).map((e) => ({
    path: e.path || '/',
    message:
      typeof e.schema.description === 'string' && e.value !== undefined
        ? e.schema.description
        : e.message,
  }))
}
