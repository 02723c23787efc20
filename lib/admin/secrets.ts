// Random bearer values (session cookies, setup tokens, ceremony ids) and their stored form.
// Only the sha256 of a bearer value is ever written to the database.
import { createHash, randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { dirname } from 'node:path'
import { claError } from '../errors.js'

/** 32 random bytes, base64url (43 characters). */
export function randomToken(): string {
  return randomBytes(32).toString('base64url')
}

export function sha256hex(value: string): string {
  return createHash('sha256').update(value, 'utf8').digest('hex')
}

/**
 * The admin UI's server secret (signs the CSRF cookie and keys its HMAC), kept in
 * {data}/keys/admin-cookie.key (mode 0600) so sessions' forms survive a restart.
 * Created on first use with 32 random bytes; `wx` so two processes never both write it.
 */
export function loadOrCreateSecret(file: string): string {
  try {
    const s = readFileSync(file, 'utf8').trim()
    if (s.length >= 32) return s
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `${file} is shorter than 32 characters; delete it to make a new one`,
    )
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
  mkdirSync(dirname(file), { recursive: true, mode: 0o700 })
  const secret = randomBytes(32).toString('base64url')
  try {
    writeFileSync(file, secret + '\n', { mode: 0o600, flag: 'wx' })
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return loadOrCreateSecret(file)
    throw claError('CLA_ERR_INVALID_OPTION', `cannot write ${file}: ${(err as Error).message}`, {
      cause: err,
    })
  }
  return secret
}
