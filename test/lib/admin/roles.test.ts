// roles.ts: which permission each role carries, and the strongest of several.
import t from 'tap'
import { can, strongest } from '../../../lib/admin/roles.js'

t.test('roles: owner ⊃ operator ⊃ viewer', async (t) => {
  t.ok(can('owner', 'admins'))
  t.notOk(can('operator', 'admins'))
  t.ok(can('operator', 'change'))
  t.notOk(can('viewer', 'change'))
  t.ok(can('viewer', 'read'))
  t.equal(strongest(['viewer', 'owner', 'operator']), 'owner')
  t.equal(strongest([]), undefined)
})
