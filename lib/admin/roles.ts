// Admin roles and what each may do. The roles themselves are rows of `roles` (schema.sql);
// this file is the one place that decides which permission each role carries.
import { claError } from '../errors.js'

export const ROLES = ['owner', 'operator', 'viewer'] as const
export type Role = (typeof ROLES)[number]

/**
 * read:    see every page
 * change:  create or change customers, billing entities, POP settings
 * admins:  enroll (invite) further admins
 */
export type Permission = 'read' | 'change' | 'admins'

const GRANTS: Record<Role, readonly Permission[]> = {
  owner: ['read', 'change', 'admins'],
  operator: ['read', 'change'],
  viewer: ['read'],
}

/** Highest first: a human holding several roles acts with the strongest. */
const RANK: Record<Role, number> = { owner: 3, operator: 2, viewer: 1 }

export function isRole(v: unknown): v is Role {
  return typeof v === 'string' && (ROLES as readonly string[]).includes(v)
}

export function can(role: Role, permission: Permission): boolean {
  return GRANTS[role].includes(permission)
}

/** A role's rank: owner 3, operator 2, viewer 1 (a grant never exceeds its giver's). */
export function rank(role: Role): number {
  return RANK[role]
}

export function strongest(roles: readonly Role[]): Role | undefined {
  let best: Role | undefined
  for (const r of roles) if (best === undefined || RANK[r] > RANK[best]) best = r
  return best
}

export function parseRole(v: unknown): Role {
  if (!isRole(v))
    throw claError('CLA_ERR_INVALID_INPUT', `role must be one of ${ROLES.join(', ')}`, {
      details: { field: 'role' },
    })
  return v
}

/** Throws CLA_ERR_ADMIN_FORBIDDEN unless `role` carries `permission`. */
export function assertCan(role: Role, permission: Permission): void {
  if (!can(role, permission)) {
    throw claError(
      'CLA_ERR_ADMIN_FORBIDDEN',
      `role ${role} may not ${permission === 'admins' ? 'enroll admins' : 'change anything'}`,
      {
        details: { role, permission },
      },
    )
  }
}
