// Our own ids for billing rows: `<prefix>_` + 26 lowercase base-36 characters, sortable by
// creation time (10 characters of milliseconds, then 16 random). The prefixes differ from
// Paddle's (ctm_, add_, …) so an id always says whose it is. Every create at Paddle carries
// our id in custom_data.clavitor_id: that is how a retry finds an object it already made.
import { randomBytes } from 'node:crypto'

const ALPHABET = '0123456789abcdefghijklmnopqrstuvwxyz'

export function newId(prefix: string, nowMs: number): string {
  const time = Math.max(0, Math.floor(nowMs)).toString(36).padStart(10, '0').slice(-10)
  const bytes = randomBytes(16)
  let rand = ''
  for (const b of bytes) rand += ALPHABET[b % 36]
  return `${prefix}_${time}${rand}`
}

/** Key in custom_data that carries our id at Paddle. */
export const CUSTOM_ID_KEY = 'clavitor_id'
