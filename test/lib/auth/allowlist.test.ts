// lib/auth/allowlist.ts: CIDRs, IPv4-mapped IPv6, refused entries.
import t from 'tap'
import { ipAllowed, normalizeIp, parseAllowlist } from '../../../lib/auth/allowlist.js'

t.test('allowlist: CIDR v4/v6, IPv4-mapped IPv6, bad entries', async (t) => {
  const l = parseAllowlist(['127.0.0.1', '10.0.0.0/8', '2001:db8::/32', '::ffff:192.0.2.0/120'])
  t.ok(ipAllowed('127.0.0.1', l))
  t.ok(ipAllowed('::ffff:127.0.0.1', l), 'mapped address matches the IPv4 entry')
  t.notOk(ipAllowed('127.0.0.2', l))
  t.ok(ipAllowed('10.200.3.4', l))
  t.ok(ipAllowed('2001:db8::1', l))
  t.ok(ipAllowed('192.0.2.7', l), 'mapped CIDR applies to IPv4')
  t.notOk(ipAllowed('2001:db9::1', l))
  t.notOk(ipAllowed(undefined, l))
  t.notOk(ipAllowed('garbage', l))
  t.equal(normalizeIp('::ffff:10.1.2.3'), '10.1.2.3')
  t.throws(() => parseAllowlist(['10.0.0.0/33']), { code: 'CLA_ERR_INVALID_OPTION' })
  t.throws(() => parseAllowlist(['example.com']), { code: 'CLA_ERR_INVALID_OPTION' })
})
