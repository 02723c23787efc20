// JSON bodies are validated without type coercion. Fastify's default Ajv coerces
// (`coerceTypes: 'array'`), which suits query strings and path parameters (always text)
// but lets a body's `"p0": ["…"]` or `"wl3": 1234` through as strings. Bodies get an Ajv
// with `coerceTypes: false`; every other part keeps Fastify's defaults.
import AjvCompiler from '@fastify/ajv-compiler'
import type { FastifyServerOptions } from 'fastify'

const buildFromPool = AjvCompiler()

type BuildValidator = NonNullable<
  NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']
>['buildValidator']

const buildValidator: BuildValidator = (externalSchemas, ajvOptions) => {
  const opts = (ajvOptions ?? {}) as AjvCompiler.Options & { customOptions?: AjvCompiler.Options }
  const coercing = buildFromPool(externalSchemas as never, opts as never)
  const strict = buildFromPool(
    externalSchemas as never,
    {
      ...opts,
      customOptions: { ...opts.customOptions, coerceTypes: false },
    } as never,
  )
  return (route) => (route.httpPart === 'body' ? strict(route) : coercing(route))
}

/** Fastify options for an app whose body schemas must not coerce types. */
export const strictBodyOptions: Pick<FastifyServerOptions, 'schemaController'> = {
  schemaController: { compilersFactory: { buildValidator } },
}
