// RFC 9421 HTTP Message Signatures (requests only) with Ed25519, and RFC 9530
// Content-Digest (sha-256). Framework-agnostic: callers pass the request's parts.
//
// Supported components: @method, @target-uri, @authority, @scheme, @request-target,
// @path, @query, and HTTP fields by (lowercase) name. Component parameters (;sf, ;key,
// ;bs, ;req, ;name) are refused as unsupported. Signature parameters: created, expires,
// nonce, keyid, alg, tag.
//
// What the POP API requires (POP_SIGNATURE_COMPONENTS, verify options below): @method,
// @path, @query, @authority and content-digest covered; created, nonce and keyid present;
// alg, when present, is "ed25519" (the allowed list is that one value).
//
// Every failure is a ClavitorError CLA_ERR_AUTH_SIGNATURE (401) with details.reason:
//   sig_missing | sig_malformed | sig_unsupported | sig_components | sig_params | sig_alg |
//   sig_keyid_unknown | sig_expired | sig_invalid | digest_missing | digest_malformed |
//   digest_mismatch
import { createHash, sign as edSign, verify as edVerify, type KeyObject } from 'node:crypto'
import { claError, type ClavitorError } from '../errors.js'
import {
  isInnerList,
  parseDictionary,
  serializeInnerList,
  type BareItem,
  type InnerList,
} from './structured-fields.js'

export const ALLOWED_ALGS: readonly string[] = ['ed25519']
export const POP_SIGNATURE_COMPONENTS = [
  '@method',
  '@path',
  '@query',
  '@authority',
  'content-digest',
] as const

export type Headers = Record<string, string | string[] | number | undefined>

export interface SignableRequest {
  /** HTTP method, any case (uppercased in the base). */
  method: string
  /** Absolute path as sent on the wire, without the query ("" means "/"). */
  path: string
  /** Query as sent on the wire, WITHOUT the leading "?" ("" when absent). */
  query: string
  /** Host[:port] as sent (Host header); lowercased, default ports as given. */
  authority: string
  /** "http" or "https"; used only by @scheme and @target-uri. Default "https". */
  scheme?: string
  headers: Headers
}

export type SignatureReason =
  | 'sig_missing'
  | 'sig_malformed'
  | 'sig_unsupported'
  | 'sig_components'
  | 'sig_params'
  | 'sig_alg'
  | 'sig_keyid_unknown'
  | 'sig_expired'
  | 'sig_invalid'
  | 'digest_missing'
  | 'digest_malformed'
  | 'digest_mismatch'

export function signatureError(
  reason: SignatureReason,
  message: string,
  cause?: unknown,
): ClavitorError {
  return claError('CLA_ERR_AUTH_SIGNATURE', message, { cause, details: { reason } })
}

function headerValues(headers: Headers, name: string): string[] | undefined {
  for (const [k, v] of Object.entries(headers)) {
    if (k.toLowerCase() !== name || v === undefined) continue
    return Array.isArray(v) ? v : [String(v)]
  }
  return undefined
}

/** A header's value as RFC 9421 §2.1 wants it: each line trimmed, lines joined by ", ". */
export function fieldValue(headers: Headers, name: string): string | undefined {
  const v = headerValues(headers, name)
  return v?.map((s) => s.trim().replace(/\r?\n[ \t]*/g, ' ')).join(', ')
}

function componentValue(req: SignableRequest, name: string): string {
  const scheme = (req.scheme ?? 'https').toLowerCase()
  switch (name) {
    case '@method':
      return req.method.toUpperCase()
    case '@authority':
      return req.authority.toLowerCase()
    case '@scheme':
      return scheme
    case '@path':
      return req.path === '' ? '/' : req.path
    case '@query':
      return '?' + req.query
    case '@request-target':
      return (req.path === '' ? '/' : req.path) + (req.query ? '?' + req.query : '')
    case '@target-uri':
      return `${scheme}://${req.authority.toLowerCase()}${req.path === '' ? '/' : req.path}${req.query ? '?' + req.query : ''}`
    default: {
      if (name.startsWith('@'))
        throw signatureError('sig_unsupported', `component ${name} is not supported`)
      const v = fieldValue(req.headers, name)
      if (v === undefined)
        throw signatureError('sig_components', `covered header ${name} is not in the request`)
      return v
    }
  }
}

/**
 * The signature base (RFC 9421 §2.5) for the covered components and the serialized
 * signature parameters (the Inner List, e.g. `("@method" "@path");created=1;keyid="a"`).
 */
export function signatureBase(req: SignableRequest, input: InnerList): string {
  const lines: string[] = []
  const seen = new Set<string>()
  for (const it of input.items) {
    if (typeof it.value !== 'string')
      throw signatureError('sig_malformed', 'component identifiers must be strings')
    if (it.params.size > 0)
      throw signatureError(
        'sig_unsupported',
        `component parameters are not supported (${it.value})`,
      )
    const name = it.value
    if (name !== name.toLowerCase() || name === '@signature-params' || name === '@status') {
      throw signatureError('sig_malformed', `bad component identifier ${JSON.stringify(name)}`)
    }
    if (seen.has(name)) throw signatureError('sig_malformed', `component ${name} is covered twice`)
    seen.add(name)
    const value = componentValue(req, name)
    if (/[\r\n]/.test(value))
      throw signatureError('sig_malformed', `component ${name} holds a line break`)
    lines.push(`"${name}": ${value}`)
  }
  lines.push(`"@signature-params": ${serializeInnerList(input)}`)
  return lines.join('\n')
}

/** RFC 9530 Content-Digest value for a body: `sha-256=:<base64>:`. */
export function contentDigest(body: Uint8Array | string): string {
  return `sha-256=:${createHash('sha256').update(body).digest('base64')}:`
}

/** Checks a Content-Digest header against the bytes received (sha-256 required). */
export function verifyContentDigest(headers: Headers, body: Uint8Array | string): void {
  const raw = fieldValue(headers, 'content-digest')
  if (raw === undefined) throw signatureError('digest_missing', 'content-digest header is missing')
  let dict
  try {
    dict = parseDictionary(raw)
  } catch (cause) {
    throw signatureError(
      'digest_malformed',
      `content-digest is not a structured dictionary: ${(cause as Error).message}`,
      cause,
    )
  }
  const m = dict.get('sha-256')
  if (!m || isInnerList(m) || !(m.value instanceof Uint8Array) || m.value.length !== 32) {
    throw signatureError(
      'digest_malformed',
      'content-digest must carry sha-256=:<base64 of 32 bytes>:',
    )
  }
  const actual = createHash('sha256').update(body).digest()
  if (!actual.equals(Buffer.from(m.value))) {
    throw signatureError('digest_mismatch', 'content-digest does not match the body received')
  }
}

export interface SignOptions {
  /** Ed25519 private key. */
  key: KeyObject
  keyid: string
  /** Seconds since the epoch; default now. */
  created?: number
  /** A unique nonce; default 16 random bytes, base64url. Pass null to omit. */
  nonce?: string | null
  /** Seconds since the epoch, optional. */
  expires?: number
  /** Include alg="ed25519" (default true). */
  includeAlg?: boolean
  /** Covered components, in order. Default POP_SIGNATURE_COMPONENTS. */
  components?: readonly string[]
  /** Signature label. Default "sig1". */
  label?: string
}

/**
 * Signs a request. Returns the headers to add: `signature-input`, `signature` (and
 * `content-digest` when `body` is given and content-digest is covered).
 */
export function signRequest(
  req: SignableRequest,
  opts: SignOptions,
  body?: Uint8Array | string,
): { 'signature-input': string; signature: string; 'content-digest'?: string } {
  const components = opts.components ?? POP_SIGNATURE_COMPONENTS
  const extra: { 'content-digest'?: string } = {}
  let headers = req.headers
  if (body !== undefined && components.includes('content-digest')) {
    extra['content-digest'] = contentDigest(body)
    headers = { ...req.headers, 'content-digest': extra['content-digest'] }
  }
  const params = new Map<string, BareItem>()
  params.set('created', opts.created ?? Math.floor(Date.now() / 1000))
  if (opts.expires !== undefined) params.set('expires', opts.expires)
  const nonce = opts.nonce === undefined ? randomNonce() : opts.nonce
  if (nonce !== null) params.set('nonce', nonce)
  params.set('keyid', opts.keyid)
  if (opts.includeAlg ?? true) params.set('alg', 'ed25519')
  const input: InnerList = {
    items: components.map((c) => ({ value: c, params: new Map() })),
    params,
  }
  const base = signatureBase({ ...req, headers }, input)
  const sig = edSign(null, Buffer.from(base, 'utf8'), opts.key)
  const label = opts.label ?? 'sig1'
  return {
    'signature-input': `${label}=${serializeInnerList(input)}`,
    signature: `${label}=:${sig.toString('base64')}:`,
    ...extra,
  }
}

function randomNonce(): string {
  return createHash('sha256')
    .update(globalThis.crypto.getRandomValues(new Uint8Array(32)))
    .digest('base64url')
    .slice(0, 22)
}

export interface VerifyOptions {
  /** The public key for a keyid, or undefined when unknown (→ sig_keyid_unknown). */
  resolveKey: (keyid: string) => KeyObject | undefined
  /** Components that must be covered. Default POP_SIGNATURE_COMPONENTS. */
  requiredComponents?: readonly string[]
  /** Parameters that must be present. Default ['created', 'nonce', 'keyid']. */
  requiredParams?: readonly string[]
  /** Require the alg parameter (default true); when present it must be in ALLOWED_ALGS. */
  requireAlg?: boolean
  /** Only verify this label (default: the first label of Signature-Input). */
  label?: string
  /** Now, seconds since the epoch, for `expires`. Default now. */
  now?: number
}

export interface VerifiedSignature {
  label: string
  keyid: string
  created: number | undefined
  expires: number | undefined
  nonce: string | undefined
  alg: string | undefined
  components: string[]
  base: string
}

/**
 * Verifies the request's signature (RFC 9421 §3.2). Does NOT check content-digest against
 * the body (verifyContentDigest) or the time window and nonce (lib/auth/replay.ts).
 */
export function verifyRequestSignature(
  req: SignableRequest,
  opts: VerifyOptions,
): VerifiedSignature {
  const inputRaw = fieldValue(req.headers, 'signature-input')
  const sigRaw = fieldValue(req.headers, 'signature')
  if (inputRaw === undefined || sigRaw === undefined) {
    throw signatureError('sig_missing', 'signature and signature-input headers are required')
  }
  let inputs, sigs
  try {
    inputs = parseDictionary(inputRaw)
    sigs = parseDictionary(sigRaw)
  } catch (cause) {
    throw signatureError(
      'sig_malformed',
      `signature headers are malformed: ${(cause as Error).message}`,
      cause,
    )
  }
  const label = opts.label ?? inputs.keys().next().value
  if (label === undefined) throw signatureError('sig_missing', 'signature-input is empty')
  const input = inputs.get(label)
  const sig = sigs.get(label)
  if (!input || !isInnerList(input))
    throw signatureError('sig_malformed', `signature-input ${label} is not an inner list`)
  if (!sig || isInnerList(sig) || !(sig.value instanceof Uint8Array)) {
    throw signatureError('sig_malformed', `signature ${label} is missing or not a byte sequence`)
  }
  const p = input.params
  const str = (k: string): string | undefined => {
    const v = p.get(k)
    if (v === undefined) return undefined
    if (typeof v !== 'string')
      throw signatureError('sig_malformed', `parameter ${k} must be a string`)
    return v
  }
  const int = (k: string): number | undefined => {
    const v = p.get(k)
    if (v === undefined) return undefined
    if (typeof v !== 'number' || !Number.isInteger(v))
      throw signatureError('sig_malformed', `parameter ${k} must be an integer`)
    return v
  }
  const keyid = str('keyid')
  const alg = str('alg')
  const nonce = str('nonce')
  str('tag')
  const created = int('created')
  const expires = int('expires')
  for (const k of opts.requiredParams ?? ['created', 'nonce', 'keyid']) {
    if (!p.has(k)) throw signatureError('sig_params', `signature parameter ${k} is required`)
  }
  if (alg === undefined ? (opts.requireAlg ?? true) : !ALLOWED_ALGS.includes(alg)) {
    throw signatureError('sig_alg', `alg must be one of: ${ALLOWED_ALGS.join(', ')}`)
  }
  const components = input.items.map((i) => i.value)
  for (const c of opts.requiredComponents ?? POP_SIGNATURE_COMPONENTS) {
    if (!components.includes(c))
      throw signatureError('sig_components', `the signature must cover ${c}`)
  }
  if (keyid === undefined)
    throw signatureError('sig_params', 'signature parameter keyid is required')
  const key = opts.resolveKey(keyid)
  if (!key) throw signatureError('sig_keyid_unknown', `unknown keyid ${JSON.stringify(keyid)}`)
  if (key.asymmetricKeyType !== 'ed25519')
    throw signatureError('sig_alg', 'the key for this keyid is not Ed25519')
  if (expires !== undefined && expires < (opts.now ?? Math.floor(Date.now() / 1000))) {
    throw signatureError('sig_expired', 'the signature has expired')
  }
  const base = signatureBase(req, input)
  let ok = false
  try {
    ok = sig.value.length === 64 && edVerify(null, Buffer.from(base, 'utf8'), key, sig.value)
  } catch (cause) {
    throw signatureError('sig_invalid', 'the signature does not verify', cause)
  }
  if (!ok) throw signatureError('sig_invalid', 'the signature does not verify')
  return { label, keyid, created, expires, nonce, alg, components: components as string[], base }
}
