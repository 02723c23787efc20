// The POP registry (core side): the `pops` table. A POP is known by its id, the sha256
// fingerprint of its client certificate, its Ed25519 public key (the same key signs its
// requests) and an IP allowlist. `clavitor core pop add|list|remove` drive it.
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto'
import type { Db } from '../db/open.js'
import { nowMicros } from '../db/open.js'
import { claError } from '../errors.js'
import { assertPopId, certFingerprint, ed25519PublicKeyBase64, popIdFromCert } from './ca.js'
import { parseAllowlist } from './allowlist.js'
import { revokePopRefreshTokens } from './tokens.js'

export interface PopRecord {
  id: string
  name: string | null
  certFingerprint: string
  publicKey: string
  allowlist: string[]
  createdAt: number
  removedAt: number | null
}

interface PopRow {
  id: string
  name: string | null
  cert_fingerprint: string | null
  public_key: string | null
  allowlist: string
  created_at: number
  removed_at: number | null
}

function toRecord(r: PopRow): PopRecord {
  return {
    id: r.id,
    name: r.name,
    certFingerprint: r.cert_fingerprint ?? '',
    publicKey: r.public_key ?? '',
    allowlist: JSON.parse(r.allowlist) as string[],
    createdAt: r.created_at,
    removedAt: r.removed_at,
  }
}

export interface AddPopInput {
  id: string
  /** The POP's client certificate (PEM) issued by `clavitor ca issue-pop`. */
  certPem: string
  /** CIDR list; at least one entry. */
  allowlist: string[]
  name?: string
}

/** Reads a POP certificate and checks it names `id`; returns fingerprint and key. */
export function inspectPopCert(
  certPem: string,
  id: string,
): { fingerprint: string; publicKey: string } {
  let cert: X509Certificate
  try {
    cert = new X509Certificate(certPem)
  } catch (cause) {
    throw claError('CLA_ERR_INVALID_INPUT', 'the certificate is not a PEM X.509 certificate', {
      cause,
    })
  }
  if (popIdFromCert(cert) !== id) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      `the certificate does not name POP ${id} (SAN URI urn:clavitor:pop:${id})`,
    )
  }
  const publicKey = ed25519PublicKeyBase64(cert)
  if (!publicKey) throw claError('CLA_ERR_INVALID_INPUT', 'the certificate key is not Ed25519')
  return { fingerprint: certFingerprint(cert.raw), publicKey }
}

/** Registers a POP (or re-registers a removed one). Throws CLA_ERR_POP_EXISTS if live. */
export function addPop(db: Db, input: AddPopInput): PopRecord {
  assertPopId(input.id)
  if (input.allowlist.length === 0)
    throw claError('CLA_ERR_INVALID_OPTION', 'give at least one --allow CIDR for the POP')
  parseAllowlist(input.allowlist)
  const { fingerprint, publicKey } = inspectPopCert(input.certPem, input.id)
  return db.transaction(() => {
    const existing = db.prepare('SELECT * FROM pops WHERE id = ?').get(input.id) as
      PopRow | undefined
    if (existing && existing.removed_at === null) {
      throw claError(
        'CLA_ERR_POP_EXISTS',
        `POP ${input.id} is registered already; remove it first or use rotate-cert`,
      )
    }
    const row: PopRow = {
      id: input.id,
      name: input.name ?? null,
      cert_fingerprint: fingerprint,
      public_key: publicKey,
      allowlist: JSON.stringify(input.allowlist.map((s) => s.trim())),
      created_at: nowMicros(),
      removed_at: null,
    }
    db.prepare(
      `INSERT INTO pops (id, name, cert_fingerprint, public_key, allowlist, created_at, removed_at)
       VALUES (@id, @name, @cert_fingerprint, @public_key, @allowlist, @created_at, NULL)
       ON CONFLICT (id) DO UPDATE SET name = excluded.name, cert_fingerprint = excluded.cert_fingerprint,
         public_key = excluded.public_key, allowlist = excluded.allowlist, created_at = excluded.created_at,
         removed_at = NULL`,
    ).run(row)
    return toRecord(row)
  })()
}

/** Binds a POP to a new certificate (key rotation); its refresh tokens are revoked. */
export function rotatePopCert(db: Db, id: string, certPem: string): PopRecord {
  const pop = getPop(db, id)
  if (!pop) throw claError('CLA_ERR_NOT_FOUND', `no live POP ${id}`)
  const { fingerprint, publicKey } = inspectPopCert(certPem, id)
  db.transaction(() => {
    db.prepare('UPDATE pops SET cert_fingerprint = ?, public_key = ? WHERE id = ?').run(
      fingerprint,
      publicKey,
      id,
    )
    revokePopRefreshTokens(db, id, Math.floor(Date.now() / 1000))
  })()
  return getPop(db, id)!
}

export function setPopAllowlist(db: Db, id: string, allowlist: string[]): PopRecord {
  if (allowlist.length === 0) throw claError('CLA_ERR_INVALID_OPTION', 'give at least one CIDR')
  parseAllowlist(allowlist)
  const r = db
    .prepare('UPDATE pops SET allowlist = ? WHERE id = ? AND removed_at IS NULL')
    .run(JSON.stringify(allowlist), id)
  if (r.changes === 0) throw claError('CLA_ERR_NOT_FOUND', `no live POP ${id}`)
  return getPop(db, id)!
}

/** Marks a POP removed (its row stays for the audit trail); revokes its refresh tokens. */
export function removePop(db: Db, id: string): void {
  db.transaction(() => {
    const r = db
      .prepare('UPDATE pops SET removed_at = ? WHERE id = ? AND removed_at IS NULL')
      .run(nowMicros(), id)
    if (r.changes === 0) throw claError('CLA_ERR_NOT_FOUND', `no live POP ${id}`)
    revokePopRefreshTokens(db, id, Math.floor(Date.now() / 1000))
  })()
}

/** A live (not removed) POP, or undefined. */
export function getPop(db: Db, id: string): PopRecord | undefined {
  const r = db.prepare('SELECT * FROM pops WHERE id = ? AND removed_at IS NULL').get(id) as
    PopRow | undefined
  return r && r.cert_fingerprint && r.public_key ? toRecord(r) : undefined
}

export function listPops(db: Db, opts: { includeRemoved?: boolean } = {}): PopRecord[] {
  const rows = db
    .prepare(
      `SELECT * FROM pops ${opts.includeRemoved ? '' : 'WHERE removed_at IS NULL'} ORDER BY id`,
    )
    .all() as PopRow[]
  return rows.map(toRecord)
}

/** The POP's Ed25519 public key as a KeyObject. */
export function popPublicKey(pop: PopRecord): KeyObject {
  return createPublicKey({
    key: {
      kty: 'OKP',
      crv: 'Ed25519',
      x: Buffer.from(pop.publicKey, 'base64').toString('base64url'),
    },
    format: 'jwk',
  })
}
