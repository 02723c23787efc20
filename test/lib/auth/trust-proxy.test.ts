// --trust-proxy parsing (lib/auth/trust-proxy.ts): names the proxy, never "everyone".
import t from 'tap'
import { parseTrustProxy } from '../../../lib/auth/trust-proxy.js'

t.test('off unless set', async (t) => {
  for (const v of [undefined, '', ' ', 'off', 'false', 'no'])
    t.equal(parseTrustProxy(v), false, String(v))
})

t.test('addresses, CIDRs and proxy-addr keywords', async (t) => {
  t.same(parseTrustProxy('127.0.0.1'), ['127.0.0.1'])
  t.same(parseTrustProxy(' loopback , 10.0.0.0/8,2001:db8::1 '), [
    'loopback',
    '10.0.0.0/8',
    '2001:db8::1',
  ])
  t.same(parseTrustProxy('uniquelocal,linklocal'), ['uniquelocal', 'linklocal'])
})

t.test('refused with a message that says what to write', async (t) => {
  for (const v of [
    'true',
    '*',
    'on',
    '1',
    '2',
    'proxy.example.com',
    '10.0.0.0/99',
    '127.0.0.1,,10.0.0.1',
  ]) {
    t.throws(() => parseTrustProxy(v), { name: 'ClavitorError', code: 'CLA_ERR_INVALID_OPTION' }, v)
  }
  t.throws(() => parseTrustProxy('true'), /forge X-Forwarded-For/)
  t.throws(() => parseTrustProxy('1'), /not a hop count/)
})
