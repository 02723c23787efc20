// What every part of lib/admin shares, passed explicitly to each of them by the Admin
// facade (admin.ts): the metadata database, the clock and the resolved lifetimes, plus the
// request facts and acting admin that the apps hand in. No decisions here.
import type { Db } from '../db/open.js'
import { claError } from '../errors.js'
import type { Role } from './roles.js'

/** The Admin's shared state; built once by its constructor from AdminOptions. */
export interface AdminContext {
  readonly db: Db
  /** Clock in µs since the epoch. */
  readonly now: () => number
  readonly rpName: string
  readonly sessionTtlMs: number
  readonly sessionIdleMs: number
  readonly setupTokenTtlMs: number
  readonly inviteTtlMs: number
  readonly ceremonyTtlMs: number
}

/** Who is acting: the result of a valid session or API token. */
export interface Actor {
  humanId: string
  name: string
  role: Role
  /** The customer subtree the admin reaches (its root's id), or null: the installation. */
  scope: string | null
}

/** What the app knows about the request, for WebAuthn checks and the audit trail. */
export interface RequestFacts {
  /** e.g. 'localhost' or 'admin.example.com' (no scheme, no port). */
  rpID: string
  /** e.g. 'http://localhost:8080' */
  origin: string
  ip?: string
  route?: string
}

export const MS = 1000 // µs per ms

export function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0)
    throw claError('CLA_ERR_INVALID_OPTION', `admin option ${name} must be a positive number of ms`)
  return v
}
