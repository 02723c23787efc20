import t from 'tap'
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto'
import { httpbis, createSigner, createVerifier } from 'http-message-signatures'
import {
  contentDigest,
  signRequest,
  signatureBase,
  verifyContentDigest,
  verifyRequestSignature,
  type SignableRequest,
} from '../../../lib/auth/http-signature.js'
import { parseDictionary, isInnerList } from '../../../lib/auth/structured-fields.js'
import { ClavitorError } from '../../../lib/errors.js'

// RFC 9421 Appendix B.1.4 test-key-ed25519 (JWK), and the B.2 test request.
const B14 = {
  kty: 'OKP',
  crv: 'Ed25519',
  d: 'n4Ni-HpISpVObnQMW0wOhCKROaIKqKtW_2ZYb2p9KcU',
  x: 'JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs',
}
const b14Private = createPrivateKey({ key: B14, format: 'jwk' })
const b14Public = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x: B14.x }, format: 'jwk' })

const B2_REQUEST: SignableRequest = {
  method: 'POST',
  path: '/foo',
  query: 'param=Value&Pet=dog',
  authority: 'example.com',
  scheme: 'http',
  headers: {
    Host: 'example.com',
    Date: 'Tue, 20 Apr 2021 02:07:55 GMT',
    'Content-Type': 'application/json',
    'Content-Length': '18',
  },
}
const B26_INPUT =
  'sig-b26=("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"'
const B26_SIGNATURE =
  'sig-b26=:wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:'
const B26_BASE = [
  '"date": Tue, 20 Apr 2021 02:07:55 GMT',
  '"@method": POST',
  '"@path": /foo',
  '"@authority": example.com',
  '"content-type": application/json',
  '"content-length": 18',
  '"@signature-params": ("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519"',
].join('\n')

function reasonOf(fn: () => unknown): string | undefined {
  try {
    fn()
  } catch (err) {
    if (err instanceof ClavitorError) return `${err.code}:${String(err.details?.reason)}`
    throw err
  }
  return undefined
}

t.test('RFC 9421 B.2.6: signature base and signature value are reproduced exactly', async (t) => {
  const input = parseDictionary(B26_INPUT).get('sig-b26')!
  t.ok(isInnerList(input))
  if (!isInnerList(input)) return
  t.equal(signatureBase(B2_REQUEST, input), B26_BASE)
  const out = signRequest(B2_REQUEST, {
    key: b14Private,
    keyid: 'test-key-ed25519',
    created: 1618884473,
    nonce: null,
    includeAlg: false,
    components: ['date', '@method', '@path', '@authority', 'content-type', 'content-length'],
    label: 'sig-b26',
  })
  t.equal(out['signature-input'], B26_INPUT)
  t.equal(out.signature, B26_SIGNATURE, 'Ed25519 is deterministic: the RFC value')
})

t.test('RFC 9421 B.2.6: the RFC signature verifies, and a changed request does not', async (t) => {
  const req = {
    ...B2_REQUEST,
    headers: { ...B2_REQUEST.headers, 'Signature-Input': B26_INPUT, Signature: B26_SIGNATURE },
  }
  const opts = {
    resolveKey: (k: string) => (k === 'test-key-ed25519' ? b14Public : undefined),
    requiredComponents: [],
    requiredParams: ['created', 'keyid'],
    requireAlg: false,
  }
  const v = verifyRequestSignature(req, opts)
  t.equal(v.keyid, 'test-key-ed25519')
  t.equal(v.created, 1618884473)
  t.equal(v.base, B26_BASE)
  t.equal(
    reasonOf(() => verifyRequestSignature({ ...req, path: '/bar' }, opts)),
    'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(req, { ...opts, resolveKey: () => undefined })),
    'CLA_ERR_AUTH_SIGNATURE:sig_keyid_unknown',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(req, { ...opts, requireAlg: true })),
    'CLA_ERR_AUTH_SIGNATURE:sig_alg',
  )
})

const pop = generateKeyPairSync('ed25519')
const popReq = (body: string, query = 'since=5&limit=10'): SignableRequest => ({
  method: 'POST',
  path: '/pop/v1/report',
  query,
  authority: 'core.example:8443',
  headers: {
    'content-type': 'application/json',
    'content-length': String(Buffer.byteLength(body)),
  },
})
const resolve = (k: string): KeyObject | undefined => (k === 'ams1' ? pop.publicKey : undefined)

t.test('our signature covers method, path, query, authority and content-digest', async (t) => {
  const body = '{"cursor":"x"}'
  const req = popReq(body)
  const h = signRequest(req, { key: pop.privateKey, keyid: 'ams1' }, body)
  t.equal(h['content-digest'], contentDigest(body))
  t.match(
    h['signature-input'],
    /^sig1=\("@method" "@path" "@query" "@authority" "content-digest"\);created=\d+;nonce="[^"]+";keyid="ams1";alg="ed25519"$/,
  )
  const signed = { ...req, headers: { ...req.headers, ...h } }
  const v = verifyRequestSignature(signed, { resolveKey: resolve })
  t.equal(v.keyid, 'ams1')
  t.ok(v.nonce)
  t.match(v.base, /"@query": \?since=5&limit=10\n/)
  verifyContentDigest(signed.headers, body)
  t.equal(
    reasonOf(() => verifyContentDigest(signed.headers, body + ' ')),
    'CLA_ERR_AUTH_SIGNATURE:digest_mismatch',
  )
  t.equal(
    reasonOf(() => verifyContentDigest(req.headers, body)),
    'CLA_ERR_AUTH_SIGNATURE:digest_missing',
  )
  t.equal(
    reasonOf(() => verifyContentDigest({ 'content-digest': 'sha-256=abc' }, body)),
    'CLA_ERR_AUTH_SIGNATURE:digest_malformed',
  )
  // tampering
  t.equal(
    reasonOf(() =>
      verifyRequestSignature({ ...signed, query: 'since=0&limit=10' }, { resolveKey: resolve }),
    ),
    'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature({ ...signed, method: 'PUT' }, { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
  )
  t.equal(
    reasonOf(() =>
      verifyRequestSignature({ ...signed, authority: 'evil' }, { resolveKey: resolve }),
    ),
    'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
  )
  const other = {
    ...signed,
    headers: { ...signed.headers, 'content-digest': contentDigest('other') },
  }
  t.equal(
    reasonOf(() => verifyRequestSignature(other, { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
  )
  // empty query is "?"
  const empty = popReq('', '')
  const he = signRequest(empty, { key: pop.privateKey, keyid: 'ams1' }, '')
  t.match(
    verifyRequestSignature(
      { ...empty, headers: { ...empty.headers, ...he } },
      { resolveKey: resolve },
    ).base,
    /"@query": \?\n/,
  )
})

t.test('policy: alg list of one, required components and params, unknown keyid', async (t) => {
  const body = '{}'
  const req = popReq(body)
  const sign = (o: Partial<Parameters<typeof signRequest>[1]>) => ({
    ...req,
    headers: {
      ...req.headers,
      ...signRequest(req, { key: pop.privateKey, keyid: 'ams1', ...o }, body),
    },
  })
  t.equal(
    reasonOf(() => verifyRequestSignature(sign({ includeAlg: false }), { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_alg',
  )
  const badAlg = sign({})
  badAlg.headers['signature-input'] = String(badAlg.headers['signature-input']).replace(
    'alg="ed25519"',
    'alg="hmac-sha256"',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(badAlg, { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_alg',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(sign({ nonce: null }), { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_params',
  )
  t.equal(
    reasonOf(() =>
      verifyRequestSignature(
        sign({ components: ['@method', '@path', '@authority', 'content-digest'] }),
        { resolveKey: resolve },
      ),
    ),
    'CLA_ERR_AUTH_SIGNATURE:sig_components',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(sign({ keyid: 'nope' }), { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_keyid_unknown',
  )
  t.equal(
    reasonOf(() =>
      verifyRequestSignature(sign({ created: 1000, expires: 1001 }), { resolveKey: resolve }),
    ),
    'CLA_ERR_AUTH_SIGNATURE:sig_expired',
  )
})

t.test('malformed headers give typed errors, never a crash', async (t) => {
  const req = popReq('{}')
  const cases: Array<[Record<string, string>, string]> = [
    [{}, 'sig_missing'],
    [{ 'signature-input': 'sig1=("@method");keyid="a"' }, 'sig_missing'],
    [{ 'signature-input': 'sig1=("@method"', signature: 'sig1=:AAAA:' }, 'sig_malformed'],
    [
      {
        'signature-input': 'sig1=("@method");created=1;nonce="n";keyid="ams1";alg="ed25519"',
        signature: 'sig1=AAAA',
      },
      'sig_malformed',
    ],
    [
      {
        'signature-input': 'sig1=("@method");created=1;nonce="n";keyid="ams1";alg="ed25519"',
        signature: 'sig2=:AAAA:',
      },
      'sig_malformed',
    ],
    [{ 'signature-input': 'sig1="@method"', signature: 'sig1=:AAAA:' }, 'sig_malformed'],
    [
      { 'signature-input': 'sig1=("@method");created="x";keyid="ams1"', signature: 'sig1=:AAAA:' },
      'sig_malformed',
    ],
    [
      { 'signature-input': 'sig1=("@method");created=1;keyid=ams1', signature: 'sig1=:AAAA:' },
      'sig_malformed',
    ],
    [
      {
        'signature-input': 'sig1=(1 2);created=1;nonce="n";keyid="ams1";alg="ed25519"',
        signature: 'sig1=:AAAA:',
      },
      'sig_components',
    ],
    [{ 'signature-input': 'sig1=("\u00e9")', signature: 'sig1=:AAAA:' }, 'sig_malformed'],
    [{ 'signature-input': 'SIG=("@method")', signature: 'SIG=:AAAA:' }, 'sig_malformed'],
    [
      {
        'signature-input': 'sig1=("@method");created=99999999999999999;keyid="a"',
        signature: 'sig1=:A:',
      },
      'sig_malformed',
    ],
  ]
  for (const [h, reason] of cases) {
    t.equal(
      reasonOf(() =>
        verifyRequestSignature(
          { ...req, headers: { ...req.headers, ...h } },
          { resolveKey: resolve },
        ),
      ),
      `CLA_ERR_AUTH_SIGNATURE:${reason}`,
      JSON.stringify(h),
    )
  }
  // all required components covered, but signature bytes are garbage / wrong length
  const ok = signRequest(req, { key: pop.privateKey, keyid: 'ams1' }, '{}')
  for (const sig of ['sig1=:AAAA:', 'sig1=:' + Buffer.alloc(64).toString('base64') + ':']) {
    t.equal(
      reasonOf(() =>
        verifyRequestSignature(
          { ...req, headers: { ...req.headers, ...ok, signature: sig } },
          { resolveKey: resolve },
        ),
      ),
      'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
    )
  }
  // component parameters and unknown derived components are refused
  const withParam = { ...req, headers: { ...req.headers, ...ok } }
  withParam.headers['signature-input'] = String(ok['signature-input']).replace(
    '"@query"',
    '"@query";req',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(withParam, { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_unsupported',
  )
  const derived = { ...req, headers: { ...req.headers, ...ok } }
  derived.headers['signature-input'] = String(ok['signature-input']).replace(
    '"@query"',
    '"@query" "@foo"',
  )
  t.equal(
    reasonOf(() => verifyRequestSignature(derived, { resolveKey: resolve })),
    'CLA_ERR_AUTH_SIGNATURE:sig_unsupported',
  )
})

t.test('interop with the npm http-message-signatures implementation', async (t) => {
  const body = '{"seen":[1,2,3]}'
  const url = 'https://core.example:8443/pop/v1/report?since=5&limit=10'
  const headers = { 'content-type': 'application/json', 'content-digest': contentDigest(body) }
  // theirs signs, ours verifies
  const signed = await httpbis.signMessage(
    {
      key: createSigner(pop.privateKey, 'ed25519', 'ams1'),
      fields: ['@method', '@path', '@query', '@authority', 'content-digest'],
      params: ['created', 'nonce', 'keyid', 'alg'],
      paramValues: { nonce: 'n-' + Date.now() },
    },
    { method: 'POST', url, headers },
  )
  const ours = { ...popReq(body), headers: signed.headers }
  const v = verifyRequestSignature(ours, { resolveKey: resolve })
  t.equal(v.keyid, 'ams1')
  t.equal(v.label, 'sig')
  verifyContentDigest(signed.headers, body)
  t.equal(
    reasonOf(() =>
      verifyRequestSignature({ ...ours, query: 'since=6&limit=10' }, { resolveKey: resolve }),
    ),
    'CLA_ERR_AUTH_SIGNATURE:sig_invalid',
  )

  // ours signs, theirs verifies
  const req = popReq(body)
  const h = signRequest(req, { key: pop.privateKey, keyid: 'ams1' }, body)
  const result = await httpbis.verifyMessage(
    {
      keyLookup: async (p) =>
        p.keyid === 'ams1'
          ? { id: 'ams1', algs: ['ed25519'], verify: createVerifier(pop.publicKey, 'ed25519') }
          : null,
      requiredFields: ['@method', '@path', '@query', '@authority', 'content-digest'],
      requiredParams: ['created', 'nonce', 'keyid', 'alg'],
    },
    { method: 'POST', url, headers: { ...req.headers, ...h } as Record<string, string> },
  )
  t.equal(result, true)
  const tampered = await httpbis
    .verifyMessage(
      {
        keyLookup: async () => ({
          id: 'ams1',
          algs: ['ed25519'],
          verify: createVerifier(pop.publicKey, 'ed25519'),
        }),
      },
      {
        method: 'POST',
        url: url.replace('since=5', 'since=4'),
        headers: { ...req.headers, ...h } as Record<string, string>,
      },
    )
    .catch(() => false)
  t.equal(tampered, false)
})
