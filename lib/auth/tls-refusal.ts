// What a TLS-level failure on the POP API means, as one of the reason codes of
// lib/auth/pop-auth.ts, and whether it was about a credential (audited row by row) or
// only a socket that never finished its handshake (counted, lib/auth/refusal-guard.ts).
//
// The server asks for a client certificate but does not let OpenSSL reject it
// (rejectUnauthorized: false): Node would then close the socket without saying why, and
// the refusal would show as a bare reset with no address. Instead the handshake ends,
// the app reads Node's verdict (socket.authorized, socket.authorizationError: OpenSSL's
// X509 verify code) and drops the socket itself with the real reason.

/** Reasons that name a certificate problem: audited with the address. */
export type CertificateRefusal = 'cert_missing' | 'cert_untrusted' | 'cert_expired' | 'cert_revoked'

/** Reasons for a socket that never finished TLS: counted, not audited. */
export type HandshakeNoise = 'tls_aborted' | 'handshake_timeout' | 'tls_failed'

export type TlsRefusal =
  { kind: 'certificate'; reason: CertificateRefusal } | { kind: 'noise'; reason: HandshakeNoise }

/**
 * Node's verdict on a finished handshake (`authorizationError`, an OpenSSL X509 verify
 * code such as CERT_HAS_EXPIRED) as a reason code. `hadCertificate` is false when the
 * client sent none.
 */
export function certificateRefusal(
  authorizationError: string | Error | null | undefined,
  hadCertificate: boolean,
): CertificateRefusal {
  if (!hadCertificate) return 'cert_missing'
  const code = String(
    authorizationError instanceof Error
      ? ((authorizationError as Error & { code?: string }).code ?? authorizationError.message)
      : (authorizationError ?? ''),
  )
  if (code === 'CERT_REVOKED') return 'cert_revoked'
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return 'cert_expired'
  // another CA (even one with our CA's name), self-signed, bad signature, wrong purpose,
  // and our own CRL being unusable: none of them lets this certificate in
  return 'cert_untrusted'
}

/** An error of the handshake itself ('tlsClientError') as a reason code. */
export function handshakeRefusal(err: Error & { code?: string }): TlsRefusal {
  const s = `${err.code ?? ''} ${err.message}`
  if (
    /PEER_DID_NOT_RETURN_A_CERTIFICATE|did not return a certificate|CERTIFICATE_REQUIRED/i.test(s)
  )
    return { kind: 'certificate', reason: 'cert_missing' }
  if (/REVOKED/i.test(s)) return { kind: 'certificate', reason: 'cert_revoked' }
  if (/EXPIRED|NOT_YET_VALID|not yet valid/i.test(s))
    return { kind: 'certificate', reason: 'cert_expired' }
  if (
    /UNKNOWN_CA|ISSUER|VERIFY_FAILED|SELF.SIGNED|PURPOSE|SIGNATURE|PUBLIC_KEY|UNSUPPORTED_CERTIFICATE|BAD_CERTIFICATE/i.test(
      s,
    )
  ) {
    return { kind: 'certificate', reason: 'cert_untrusted' }
  }
  if (err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT')
    return { kind: 'noise', reason: 'handshake_timeout' }
  if (/ECONNRESET|EPIPE|socket hang up/i.test(s)) return { kind: 'noise', reason: 'tls_aborted' }
  return { kind: 'noise', reason: 'tls_failed' }
}
