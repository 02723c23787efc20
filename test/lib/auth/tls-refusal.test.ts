// TLS-level refusals as reason codes (lib/auth/tls-refusal.ts).
import t from 'tap'
import { certificateRefusal, handshakeRefusal } from '../../../lib/auth/tls-refusal.js'

t.test("Node's verdict on a finished handshake", async (t) => {
  t.equal(certificateRefusal(null, false), 'cert_missing')
  t.equal(certificateRefusal('UNABLE_TO_GET_ISSUER_CERT', false), 'cert_missing')
  t.equal(certificateRefusal('CERT_REVOKED', true), 'cert_revoked')
  t.equal(certificateRefusal('CERT_HAS_EXPIRED', true), 'cert_expired')
  t.equal(certificateRefusal('CERT_NOT_YET_VALID', true), 'cert_expired')
  for (const code of [
    'DEPTH_ZERO_SELF_SIGNED_CERT',
    'SELF_SIGNED_CERT_IN_CHAIN',
    'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
    'CERT_SIGNATURE_FAILURE',
    'CRL_HAS_EXPIRED',
    'SOMETHING_NEW',
  ])
    t.equal(certificateRefusal(code, true), 'cert_untrusted', code)
  t.equal(
    certificateRefusal(Object.assign(new Error('x'), { code: 'CERT_REVOKED' }), true),
    'cert_revoked',
  )
})

t.test('handshake errors: credentials audited, noise counted', async (t) => {
  const e = (code: string, message = '') => Object.assign(new Error(message), { code })
  t.same(handshakeRefusal(e('ERR_SSL_PEER_DID_NOT_RETURN_A_CERTIFICATE')), {
    kind: 'certificate',
    reason: 'cert_missing',
  })
  t.same(handshakeRefusal(e('ERR_SSL_WRONG_PUBLIC_KEY_TYPE')), {
    kind: 'certificate',
    reason: 'cert_untrusted',
  })
  t.same(handshakeRefusal(e('ERR_TLS_HANDSHAKE_TIMEOUT')), {
    kind: 'noise',
    reason: 'handshake_timeout',
  })
  t.same(handshakeRefusal(e('ECONNRESET')), { kind: 'noise', reason: 'tls_aborted' })
  t.same(handshakeRefusal(e('ERR_SSL_HTTP_REQUEST', 'http request')), {
    kind: 'noise',
    reason: 'tls_failed',
  })
})
