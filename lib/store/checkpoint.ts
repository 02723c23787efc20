// Signed checkpoints of the replication log: the core's statement "store S, generation G,
// held exactly the published blobs up to (created_at, seq), whose chain value is C, at
// time T", signed with the core store's Ed25519 key as a statement (lib/store/keys.ts,
// domain "clavitor checkpoint v1\n"). A POP verifies one per feed page against the chain it
// recomputed (lib/pop-sync/pull.ts), keeps the newest, and serves it to vaults as its
// freshness (a vault can refuse a POP older than it accepts: a rollback or freeze attack).
// The body is plain text, one "name value" line each, in the style of the Go checksum
// database's signed notes; layout and a test vector in docs/format.md.
import { claError } from '../errors.js'
import { signStatement, verifyStatement, type KeyRing, type SigningKey } from './keys.js'

/** The statement domain of a checkpoint signature. */
export const CHECKPOINT_DOMAIN = 'clavitor checkpoint v1\n'

/** What a checkpoint states, before it is signed. */
export interface CheckpointBody {
  /** The core store's id (store.json). */
  store_id: string
  /** The core store's generation. */
  generation: number
  /** seq of the last published blob covered; 0 for an empty log. */
  seq: number
  /** created_at (µs) of that blob; 0 for an empty log. */
  created_at: number
  /** The chain value after that blob (lib/store/chain.ts), 64 hex characters. */
  chain: string
  /** When the core signed it, µs since the Unix epoch. */
  time: number
}

/** A signed checkpoint, as the feed carries it and a POP serves it. */
export interface Checkpoint extends CheckpointBody {
  /** Id of the signing key (32 hex characters). */
  key_id: string
  /** Ed25519 signature of the statement, base64. */
  signature: string
}

const STORE_ID = /^[A-Za-z0-9._:-]{1,128}$/
const HEX64 = /^[0-9a-f]{64}$/
const HEX32 = /^[0-9a-f]{32}$/

function isU53(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0
}

/** The exact bytes a checkpoint signature covers (after the domain line). */
export function checkpointBytes(b: CheckpointBody): Buffer {
  return Buffer.from(
    `store ${b.store_id}\ngeneration ${b.generation}\nseq ${b.seq}\ncreated_at ${b.created_at}\nchain ${b.chain}\ntime ${b.time}\n`,
    'utf8',
  )
}

/** Signs `body` with `key`. */
export function signCheckpoint(key: SigningKey, body: CheckpointBody): Checkpoint {
  const sig = signStatement(key, CHECKPOINT_DOMAIN, checkpointBytes(body))
  return { ...body, key_id: key.keyId, signature: sig.toString('base64') }
}

/**
 * Checks a checkpoint's shape and its signature by a key in `ring`; returns it with only the
 * known fields. Throws CLA_ERR_SYNC_CHECKPOINT (a malformed or forged checkpoint).
 */
export function verifyCheckpoint(ring: KeyRing, raw: unknown): Checkpoint {
  const c = raw as Partial<Checkpoint> | null
  const shaped =
    c !== null &&
    typeof c === 'object' &&
    typeof c.store_id === 'string' &&
    STORE_ID.test(c.store_id) &&
    isU53(c.generation) &&
    isU53(c.seq) &&
    isU53(c.created_at) &&
    isU53(c.time) &&
    typeof c.chain === 'string' &&
    HEX64.test(c.chain) &&
    typeof c.key_id === 'string' &&
    HEX32.test(c.key_id) &&
    typeof c.signature === 'string' &&
    /^[A-Za-z0-9+/]{86}==$/.test(c.signature)
  if (!shaped) {
    throw claError('CLA_ERR_SYNC_CHECKPOINT', 'the checkpoint is malformed')
  }
  const cp: Checkpoint = {
    store_id: c.store_id!,
    generation: c.generation!,
    seq: c.seq!,
    created_at: c.created_at!,
    chain: c.chain!,
    time: c.time!,
    key_id: c.key_id!,
    signature: c.signature!,
  }
  if (!ring.has(cp.key_id)) {
    throw claError(
      'CLA_ERR_SYNC_CHECKPOINT',
      `the checkpoint is signed by key ${cp.key_id}, which this store does not trust`,
      { details: { key_id: cp.key_id } },
    )
  }
  const ok = verifyStatement(
    ring,
    cp.key_id,
    CHECKPOINT_DOMAIN,
    checkpointBytes(cp),
    Buffer.from(cp.signature, 'base64'),
  )
  if (!ok) {
    throw claError('CLA_ERR_SYNC_CHECKPOINT', 'the checkpoint signature does not verify', {
      details: { key_id: cp.key_id, seq: cp.seq },
    })
  }
  return cp
}

/**
 * A checkpoint as one HTTP header value (RFC 8941 dictionary): what a POP adds to its
 * lookups (`Clavitor-Checkpoint`), enough for a vault to verify it with the core's key.
 */
export function checkpointHeader(c: Checkpoint): string {
  return [
    `store="${c.store_id}"`,
    `generation=${c.generation}`,
    `seq=${c.seq}`,
    `created-at=${c.created_at}`,
    `chain=:${Buffer.from(c.chain, 'hex').toString('base64')}:`,
    `time=${c.time}`,
    `key="${c.key_id}"`,
    `sig=:${c.signature}:`,
  ].join(', ')
}

/** Parses {@link checkpointHeader}'s value back (no signature check: see verifyCheckpoint). */
export function parseCheckpointHeader(value: string): Checkpoint {
  const m = new Map<string, string>()
  for (const part of value.split(',')) {
    const i = part.indexOf('=')
    if (i > 0) m.set(part.slice(0, i).trim(), part.slice(i + 1).trim())
  }
  const str = (k: string) => /^"(.*)"$/.exec(m.get(k) ?? '')?.[1] ?? ''
  const bytes = (k: string) => /^:(.*):$/.exec(m.get(k) ?? '')?.[1] ?? ''
  const num = (k: string) => (/^\d{1,16}$/.test(m.get(k) ?? '') ? Number(m.get(k)) : NaN)
  return {
    store_id: str('store'),
    generation: num('generation'),
    seq: num('seq'),
    created_at: num('created-at'),
    chain: Buffer.from(bytes('chain'), 'base64').toString('hex'),
    time: num('time'),
    key_id: str('key'),
    signature: bytes('sig'),
  }
}
