import t from 'tap'
import { readFileSync } from 'node:fs'
import { ERRORS, ClavitorError, errorResponse, isClavitorError } from '../../lib/errors.js'
import { renderErrorsMd } from '../../scripts/docs/errors-md.js'

t.test('docs/errors.md is in step with lib/errors.ts', async (t) => {
  const committed = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8')
  t.equal(
    committed,
    renderErrorsMd(),
    'regenerate with: scripts/clavitor-ts scripts/docs/errors-md.ts --write',
  )
})

t.test('codes are prefixed and statuses are HTTP errors', async (t) => {
  for (const [code, spec] of Object.entries(ERRORS)) {
    t.match(code, /^CLA_ERR_[A-Z0-9_]+$/, code)
    t.ok(spec.status >= 400 && spec.status < 600, `${code} status`)
  }
})

t.test('ClavitorError carries code, status, exit, cause and details', async (t) => {
  const cause = new Error('low level')
  const err = new ClavitorError('CLA_ERR_INVALID_P0', 'bad p0', { cause, details: { field: 'p0' } })
  t.equal(err.code, 'CLA_ERR_INVALID_P0')
  t.equal(err.status, 400)
  t.equal(err.exit, 2)
  t.equal(err.cause, cause)
  t.ok(isClavitorError(err, 'CLA_ERR_INVALID_P0'))
  t.notOk(isClavitorError(err, 'CLA_ERR_NOT_FOUND'))
  t.same(errorResponse(err), {
    status: 400,
    body: { error: { code: 'CLA_ERR_INVALID_P0', message: 'bad p0', details: { field: 'p0' } } },
  })
})

t.test('unknown errors become an opaque 500; framework 4xx keep their status', async (t) => {
  t.same(errorResponse(new Error('secret internals')), {
    status: 500,
    body: { error: { code: 'CLA_ERR_INTERNAL', message: 'internal error' } },
  })
  const fst = Object.assign(new Error('body too large'), {
    statusCode: 413,
    code: 'FST_ERR_CTP_BODY_TOO_LARGE',
  })
  t.equal(errorResponse(fst).status, 413)
  t.equal(errorResponse(fst).body.error.code, 'FST_ERR_CTP_BODY_TOO_LARGE')
})
