// Fastify's own 4xx errors (schema validation, body parsing) as our stable codes, for the
// JSON APIs (server/routes/credentials.ts adds its p0 and wl3 cases; server/admin/api.ts).
import type { FastifyError } from 'fastify'
import { claError, type ErrorCode } from '../lib/errors.js'

/** The coded error for a framework error, or the error itself when it is not one. */
export function mapFastifyError(err: FastifyError): unknown {
  const withCode = (code: ErrorCode, message: string, details?: Record<string, unknown>) =>
    claError(code, message, { cause: err, ...(details ? { details } : {}) })
  if (err.validation) {
    const first = err.validation[0]
    const field =
      first?.instancePath?.replace(/^\//, '') ||
      ((first?.params as { missingProperty?: string } | undefined)?.missingProperty ?? '')
    const where = err.validationContext ?? 'request'
    return withCode(
      'CLA_ERR_INVALID_INPUT',
      `${where}${field ? `.${field}` : ''} ${first?.message ?? 'is invalid'}`,
      { field },
    )
  }
  switch (err.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return withCode('CLA_ERR_PAYLOAD_TOO_LARGE', 'request body is larger than the limit')
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return withCode('CLA_ERR_UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json')
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return withCode('CLA_ERR_INVALID_INPUT', `request body is not valid JSON: ${err.message}`)
  }
  if (err.statusCode === 400 && err instanceof SyntaxError) {
    return withCode('CLA_ERR_INVALID_INPUT', `request body is not valid JSON: ${err.message}`)
  }
  return err
}
