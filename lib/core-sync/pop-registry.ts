// The core's POP registry as operations: each one changes the registry (lib/auth/pops.ts),
// the rsync daemon's secrets (rsync-auth.ts) or the token secret as one step, and writes
// its `admin.action` audit row. The CLI (`clavitor core pop …`) and the demo call these,
// so "register a POP" means the same thing wherever it is done.
import type { Db } from '../db/open.js'
import { appendEvent } from '../audit/log.js'
import {
  addPop,
  removePop,
  rotatePopCert,
  setPopAllowlist,
  type AddPopInput,
  type PopRecord,
} from '../auth/pops.js'
import { rotateTokenSecret } from '../auth/tokens.js'
import { dropRsyncSecret, issueRsyncSecret } from './rsync-auth.js'

/** Who asked (the audit row's actor): 'cli', 'demo', an admin's id. */
export interface RegistryActor {
  actor: string
}

/** The rsync daemon account of a POP, handed to its operator once. */
export interface RsyncSecret {
  user: string
  password: string
}

function audit(
  db: Db,
  actor: string,
  reason: string,
  data: Record<string, unknown>,
  fingerprint?: string,
) {
  appendEvent(db, {
    kind: 'admin.action',
    actor,
    outcome: 'ok',
    reason,
    ...(fingerprint ? { fingerprint } : {}),
    data,
  })
}

/**
 * Registers a POP from its certificate and gives it an rsync daemon password (in
 * `{data}/keys/rsyncd.secrets`; returned once). Audited as `pop_add`.
 */
export function enrolPop(
  db: Db,
  coreDataDir: string,
  input: AddPopInput,
  who: RegistryActor,
): { pop: PopRecord; rsync: RsyncSecret } {
  const pop = db.transaction(() => {
    const r = addPop(db, input)
    audit(db, who.actor, 'pop_add', { pop: r.id, allowlist: r.allowlist }, r.certFingerprint)
    return r
  })()
  return { pop, rsync: issueRsyncSecret(db, coreDataDir, pop.id) }
}

/** Stops trusting a POP: registry, refresh tokens, and its rsync password at once. */
export function retirePop(db: Db, coreDataDir: string, id: string, who: RegistryActor): void {
  db.transaction(() => {
    removePop(db, id)
    audit(db, who.actor, 'pop_remove', { pop: id })
  })()
  // rsyncd reads the secrets per login: the POP is refused from its next connection
  dropRsyncSecret(coreDataDir, id)
}

/** A new rsync daemon password for a POP; the old one stops working. */
export function renewRsyncSecret(
  db: Db,
  coreDataDir: string,
  id: string,
  who: RegistryActor,
): RsyncSecret {
  const s = issueRsyncSecret(db, coreDataDir, id)
  audit(db, who.actor, 'pop_rsync_secret', { pop: id, rsync_user: s.user })
  return s
}

/** Binds a POP to its new certificate (its refresh tokens are revoked). */
export function rebindPopCert(db: Db, id: string, certPem: string, who: RegistryActor): PopRecord {
  return db.transaction(() => {
    const r = rotatePopCert(db, id, certPem)
    audit(db, who.actor, 'pop_rotate_cert', { pop: id }, r.certFingerprint)
    return r
  })()
}

/** Replaces a POP's address allowlist. */
export function replacePopAllowlist(
  db: Db,
  id: string,
  allowlist: string[],
  who: RegistryActor,
): PopRecord {
  return db.transaction(() => {
    const r = setPopAllowlist(db, id, allowlist)
    audit(db, who.actor, 'pop_allowlist', { pop: id, allowlist: r.allowlist })
    return r
  })()
}

/** A new HMAC secret for POP access tokens; the previous one still verifies. */
export function renewTokenSecret(db: Db, coreDataDir: string, who: RegistryActor): void {
  rotateTokenSecret(coreDataDir)
  audit(db, who.actor, 'pop_token_secret_rotated', {})
}
