// The payload of an audit anchor .cla, and how to tell the anchor writer's own anchors from
// anything else found at the anchor P0.
//
// The .cla signature cannot tell them apart: the core signs every blob, a vault's WL3 as
// well. So a version 2 anchor carries its own proof, an Ed25519 statement by the store's
// key (lib/store/keys.ts) over a domain no .cla signature can cover:
//
//   signed bytes = "clavitor audit anchor v2\n" + JSON.stringify([id, hash, at])
//   payload      = {"v":2,"type":"clavitor.audit.anchor","id":N,"hash":"<hex>","at":µs,
//                   "key_id":"<32 hex>","sig":"<128 hex>"}
//
// Version 1 anchors ({"v":1,…} without key_id and sig) were written before this proof
// existed. A vault could register a file of that shape at the anchor P0 through an older
// core, so a v1 anchor is read as "legacy": reported, never trusted.
import type { ChainAnchor } from './log.js'

export const ANCHOR_TYPE = 'clavitor.audit.anchor'
export const ANCHOR_DOMAIN = 'clavitor audit anchor v2\n'

export interface AnchorFields extends ChainAnchor {
  /** µs epoch when the anchor was written. */
  at: number
}

/** What signs an anchor: the core's BlobStore. */
export interface AnchorSigner {
  signStatement(domain: string, body: Buffer): { keyId: string; signature: Buffer }
}

/** What checks an anchor's proof: any BlobStore holding the core's public key. */
export interface AnchorVerifier {
  verifyStatement(domain: string, body: Buffer, keyId: string, signature: Buffer): boolean
}

export type AnchorReading =
  /** A v2 anchor whose statement verifies: written by the anchor writer. */
  | { kind: 'trusted'; anchor: AnchorFields }
  /** A v1 anchor: the anchor writer's, or a vault's forgery; nobody can tell. */
  | { kind: 'legacy'; anchor: AnchorFields }
  /** Anything else: not JSON, another shape, or a v2 whose statement does not verify. */
  | { kind: 'foreign'; why: string }

function signedBody(a: AnchorFields): Buffer {
  return Buffer.from(JSON.stringify([a.id, a.hash, a.at]), 'utf8')
}

/** The payload of a new (v2) anchor, its statement signed by `signer`. */
export function encodeAnchor(a: AnchorFields, signer: AnchorSigner): Buffer {
  const { keyId, signature } = signer.signStatement(ANCHOR_DOMAIN, signedBody(a))
  return Buffer.from(
    JSON.stringify({
      v: 2,
      type: ANCHOR_TYPE,
      id: a.id,
      hash: a.hash,
      at: a.at,
      key_id: keyId,
      sig: signature.toString('hex'),
    }),
    'utf8',
  )
}

const isHex = (v: unknown, chars: number): v is string =>
  typeof v === 'string' && v.length === chars && /^[0-9a-f]+$/.test(v)

/** Classifies a payload found at the anchor P0. Never throws on bad input. */
export function readAnchorPayload(payload: Buffer, verifier: AnchorVerifier): AnchorReading {
  let j: Record<string, unknown>
  try {
    const parsed: unknown = JSON.parse(payload.toString('utf8'))
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed))
      return { kind: 'foreign', why: 'payload is JSON but not an object' }
    j = parsed as Record<string, unknown>
  } catch {
    return { kind: 'foreign', why: 'payload is not JSON' }
  }
  if (j.type !== ANCHOR_TYPE) return { kind: 'foreign', why: `payload type is not ${ANCHOR_TYPE}` }
  if (!Number.isSafeInteger(j.id) || (j.id as number) < 1 || !isHex(j.hash, 64))
    return { kind: 'foreign', why: 'payload id or hash is malformed' }
  const id = j.id as number
  const hash = j.hash
  if (j.v === 1) return { kind: 'legacy', anchor: { id, hash, at: Number(j.at ?? 0) } }
  if (j.v !== 2) return { kind: 'foreign', why: `unknown anchor version ${JSON.stringify(j.v)}` }
  if (!Number.isSafeInteger(j.at) || (j.at as number) < 0)
    return { kind: 'foreign', why: 'payload at is malformed' }
  if (!isHex(j.key_id, 32) || !isHex(j.sig, 128))
    return { kind: 'foreign', why: 'v2 anchor without a well-formed key_id and sig' }
  const anchor = { id, hash, at: j.at as number }
  const ok = verifier.verifyStatement(
    ANCHOR_DOMAIN,
    signedBody(anchor),
    j.key_id,
    Buffer.from(j.sig, 'hex'),
  )
  if (!ok)
    return {
      kind: 'foreign',
      why: `v2 anchor whose statement does not verify with key ${j.key_id} (not written by the anchor writer)`,
    }
  return { kind: 'trusted', anchor }
}
