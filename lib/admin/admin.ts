// Admin authentication and authorisation, without HTTP. This is the facade the apps and
// the CLI hold (core.admin): it resolves the options once and passes the shared state
// (AdminContext: db, clock, lifetimes) to the part that owns each concern:
//   humans.ts       admins, their roles, disable and role changes
//   setup-links.ts  one-time first-admin links and invites
//   webauthn.ts     enrollment and login ceremonies (@simplewebauthn/server v14)
//   sessions.ts     session lookup and logout
//   authorize.ts    the permission check and 'admin.action' audit around every action
//   roles.ts        which permission each role carries
//   scope.ts        which customer subtree an admin reaches
//   api-tokens.ts   per-admin bearer tokens of the JSON admin API
// desk.ts builds on this facade: the scoped reads and actions the pages and the API call.
//
// The apps pass in what only they know (the RP id and origin of the request, the client
// IP) and get back values to put in cookies; every decision is made in lib/admin.
import type {
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/server'
import { micros, type Clock } from '../clock.js'
import type { Db } from '../db/open.js'
import * as tokens from './api-tokens.js'
import type { ApiTokenInfo } from './api-tokens.js'
import * as authz from './authorize.js'
import { positive, type Actor, type AdminContext, type RequestFacts } from './context.js'
import * as humans from './humans.js'
import type { AdminRow } from './humans.js'
import type { Permission, Role } from './roles.js'
import * as scope from './scope.js'
import type { Reach } from './scope.js'
import * as sessions from './sessions.js'
import type { AdminSession, IssuedSession } from './sessions.js'
import * as links from './setup-links.js'
import type { IssuedToken } from './setup-links.js'
import * as webauthn from './webauthn.js'

// The types callers import from here, wherever they now live.
export type { Actor, RequestFacts } from './context.js'
export type { AdminRow } from './humans.js'
export type { AdminSession, IssuedSession } from './sessions.js'
export type { IssuedToken } from './setup-links.js'
export type { ApiTokenInfo } from './api-tokens.js'
export { validateAdminName } from './humans.js'

export interface AdminOptions {
  /** Relying-party name shown by the authenticator. Default 'Clavitor admin'. */
  rpName?: string
  /** Session lifetime (absolute) in ms. Default 8 hours. */
  sessionTtlMs?: number
  /** A session unused this long (ms) ends, whatever its absolute lifetime. Default 30 minutes. */
  sessionIdleMs?: number
  /** Lifetime of the first-admin setup token in ms. Default 24 hours. */
  setupTokenTtlMs?: number
  /** Default lifetime of an invite token in ms. Default 72 hours. */
  inviteTtlMs?: number
  /** Time a WebAuthn ceremony may take, in ms. Default 5 minutes. */
  ceremonyTtlMs?: number
  /** The clock (lib/clock.ts); sessions, challenges and tokens count in µs from it. */
  clock?: Clock
}

/**
 * Admin humans, roles and scopes, WebAuthn enrollment and login, sessions, API tokens and the
 * permission check with its audit (`core.admin`). No HTTP: the apps pass in the request's
 * facts (RP id, origin, client address) and put the returned values in cookies.
 */
export class Admin {
  readonly db: Db
  readonly rpName: string
  readonly sessionTtlMs: number
  readonly sessionIdleMs: number
  readonly setupTokenTtlMs: number
  readonly inviteTtlMs: number
  readonly ceremonyTtlMs: number
  private readonly ctx: AdminContext

  constructor(db: Db, opts: AdminOptions = {}) {
    this.db = db
    this.rpName = opts.rpName ?? 'Clavitor admin'
    this.sessionTtlMs = positive('sessionTtlMs', opts.sessionTtlMs ?? 8 * 3600_000)
    this.sessionIdleMs = positive('sessionIdleMs', opts.sessionIdleMs ?? 30 * 60_000)
    this.setupTokenTtlMs = positive('setupTokenTtlMs', opts.setupTokenTtlMs ?? 24 * 3600_000)
    this.inviteTtlMs = positive('inviteTtlMs', opts.inviteTtlMs ?? 72 * 3600_000)
    this.ceremonyTtlMs = positive('ceremonyTtlMs', opts.ceremonyTtlMs ?? 5 * 60_000)
    this.ctx = {
      db,
      now: () => micros(opts.clock),
      rpName: this.rpName,
      sessionTtlMs: this.sessionTtlMs,
      sessionIdleMs: this.sessionIdleMs,
      setupTokenTtlMs: this.setupTokenTtlMs,
      inviteTtlMs: this.inviteTtlMs,
      ceremonyTtlMs: this.ceremonyTtlMs,
    }
  }

  // --- humans (humans.ts) -------------------------------------------------------------------

  /** True when at least one enabled human holds a role. */
  hasAdmins(): boolean {
    return humans.hasAdmins(this.ctx)
  }

  /** The admins, oldest first; with a scope, only those whose scope lies within it. */
  listAdmins(scope: string | null = null): AdminRow[] {
    return humans.listAdmins(this.ctx, scope)
  }

  /** The admin row for a name (CLI), or undefined. */
  findByName(name: string): AdminRow | undefined {
    return humans.findByName(this.ctx, name)
  }

  /** Owner or 'system' disables another admin; see humans.disable for the rules. */
  disable(actor: Actor | 'system', humanId: string, facts: Partial<RequestFacts> = {}): void {
    humans.disable(this.ctx, actor, humanId, facts)
  }

  /** Owner or 'system' changes another admin's role; see humans.setRole for the rules. */
  setRole(
    actor: Actor | 'system',
    humanId: string,
    role: unknown,
    facts: Partial<RequestFacts> = {},
  ): { id: string; from: Role | null; to: Role } {
    return humans.setRole(this.ctx, actor, humanId, role, facts)
  }

  // --- setup and invite links (setup-links.ts) ----------------------------------------------

  /** With no admin yet, a new one-time owner link; with admins, null. */
  firstAdminToken(): IssuedToken | null {
    return links.firstAdminToken(this.ctx)
  }

  /**
   * An owner invites a further admin with `role`, limited to `scope` (a customer id; null:
   * the installation; default: the owner's own scope), never more than the owner holds.
   * Audited; refused (and audited) for others. See setup-links.invite.
   */
  invite(
    actor: Actor,
    role: Role,
    facts: Partial<RequestFacts> = {},
    ttlMs?: number,
    scope?: unknown,
  ): IssuedToken {
    return links.invite(this.ctx, actor, role, facts, ttlMs, scope)
  }

  /** An invite from the host itself (`clavitor admin invite`): actor 'system', any scope. */
  systemInvite(role: Role, ttlMs?: number, scope?: unknown): IssuedToken {
    return links.systemInvite(this.ctx, role, ttlMs, scope)
  }

  /** The role and scope a token would enroll; CLA_ERR_ADMIN_SETUP_TOKEN when unusable. */
  checkToken(
    token: unknown,
    facts: Partial<RequestFacts> = {},
  ): { role: Role; scope: string | null; expiresAt: number } {
    return links.checkToken(this.ctx, token, facts)
  }

  // --- WebAuthn ceremonies (webauthn.ts) ----------------------------------------------------

  /**
   * Starts enrolling a security key with a setup or invite token: returns the ceremony id and the
   * WebAuthn creation options for the browser. Throws CLA_ERR_ADMIN_SETUP_TOKEN for an unusable
   * token, CLA_ERR_INVALID_INPUT for a bad or taken name.
   */
  startEnrollment(
    input: { token: unknown; name: unknown },
    facts: RequestFacts,
  ): Promise<{ ceremonyId: string; options: PublicKeyCredentialCreationOptionsJSON }> {
    return webauthn.startEnrollment(this.ctx, input, facts)
  }

  /**
   * Verifies the browser's registration response, creates the admin with the token's role and
   * scope, spends the token and opens a session. Audited. Throws CLA_ERR_WEBAUTHN_FAILED or
   * CLA_ERR_ADMIN_SETUP_TOKEN.
   */
  finishEnrollment(
    input: { ceremonyId: unknown; response: unknown },
    facts: RequestFacts,
  ): Promise<IssuedSession> {
    return webauthn.finishEnrollment(this.ctx, input, facts)
  }

  /**
   * Starts a login (discoverable credentials: no user name asked): returns the ceremony id and
   * the WebAuthn request options for the browser.
   */
  startLogin(
    facts: RequestFacts,
  ): Promise<{ ceremonyId: string; options: PublicKeyCredentialRequestOptionsJSON }> {
    return webauthn.startLogin(this.ctx, facts)
  }

  /**
   * Verifies the browser's authentication response and opens a session for the key's admin.
   * Audited. Throws CLA_ERR_WEBAUTHN_FAILED (unknown or expired ceremony, unknown key, disabled
   * admin, failed verification).
   */
  finishLogin(
    input: { ceremonyId: unknown; response: unknown },
    facts: RequestFacts,
  ): Promise<IssuedSession> {
    return webauthn.finishLogin(this.ctx, input, facts)
  }

  // --- sessions (sessions.ts) ---------------------------------------------------------------

  /** The live session behind a cookie value, or null. */
  session(cookieValue: unknown): AdminSession | null {
    return sessions.session(this.ctx, cookieValue)
  }

  /** Ends the session behind a cookie value (audited); nothing when there is no live session. */
  logout(cookieValue: unknown, facts: Partial<RequestFacts> = {}): void {
    sessions.logout(this.ctx, cookieValue, facts)
  }

  // --- API tokens (api-tokens.ts) -----------------------------------------------------------

  /** A new API token for the acting admin; the token is in the answer once. Audited. */
  createApiToken(
    actor: Actor,
    name: unknown,
    facts: Partial<RequestFacts> = {},
  ): { id: string; token: string; name: string } {
    return tokens.createApiToken(this.ctx, actor, name, facts)
  }

  /** The acting admin's own API tokens, newest first. */
  listApiTokens(actor: Actor): ApiTokenInfo[] {
    return tokens.listApiTokens(this.ctx, actor)
  }

  /** Revokes one of the acting admin's own tokens (idempotent). Audited. */
  revokeApiToken(actor: Actor, id: string, facts: Partial<RequestFacts> = {}): ApiTokenInfo {
    return tokens.revokeApiToken(this.ctx, actor, id, facts)
  }

  /** The admin a bearer token acts as now; CLA_ERR_ADMIN_UNAUTHENTICATED otherwise. */
  authenticateApiToken(
    token: unknown,
    facts: Partial<RequestFacts> = {},
  ): Actor & { tokenId: string } {
    return tokens.authenticateApiToken(this.ctx, token, facts)
  }

  // --- authorisation and audit (authorize.ts) -----------------------------------------------

  /** Runs one admin action with its permission check and 'admin.action' audit event. */
  perform<T>(
    actor: Actor,
    action: string,
    permission: Permission,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
    fn: () => T,
  ): T {
    return authz.perform(this.ctx, actor, action, permission, facts, data, fn)
  }

  /** perform() for async work (e.g. a Billing dual-write that calls Paddle). */
  performAsync<T>(
    actor: Actor,
    action: string,
    permission: Permission,
    facts: Partial<RequestFacts>,
    data: Record<string, unknown>,
    fn: () => Promise<T>,
  ): Promise<T> {
    return authz.performAsync(this.ctx, actor, action, permission, facts, data, fn)
  }

  /** The actor's scope holds what `reach` names (scope.ts). */
  reaches(actor: Actor, reach: Reach): boolean {
    return scope.reaches(this.db, actor, reach)
  }

  /** Throws CLA_ERR_ADMIN_SCOPE (after recording the refusal) unless the scope holds it. */
  requireReach(
    actor: Actor,
    action: string,
    reach: Reach,
    facts: Partial<RequestFacts> = {},
    data: Record<string, unknown> = {},
  ): void {
    scope.requireReach(this.ctx, actor, action, reach, facts, data)
  }

  /** Throws CLA_ERR_ADMIN_FORBIDDEN (after recording the refusal) unless allowed. */
  authorize(
    actor: Actor,
    action: string,
    permission: Permission,
    facts: Partial<RequestFacts> = {},
    data: Record<string, unknown> = {},
  ): void {
    authz.authorize(this.ctx, actor, action, permission, facts, data)
  }
}
