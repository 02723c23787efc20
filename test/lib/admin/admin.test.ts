// The Admin facade itself (admin.ts): its options. Each concern is tested in the file
// named after its lib/admin file (humans, setup-links, webauthn, sessions, authorize, roles).
import t from 'tap'
import { Admin } from '../../../lib/admin/admin.js'
import { setup } from './fixtures/unit.js'

t.test('options are checked', async (t) => {
  const { db } = setup(t)
  t.throws(() => new Admin(db, { sessionTtlMs: 0 }), { code: 'CLA_ERR_INVALID_OPTION' })
})
