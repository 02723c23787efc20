// RFC 3339 times as Paddle sends them, read strictly (the webhook order rests on them).
// The clock itself is lib/clock.ts.

const RFC3339 =
  /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

/**
 * RFC 3339 (with up to microseconds; more digits are cut) → µs since the epoch; NaN when
 * it is not one: a real calendar date and time of day, an offset within ±23:59. Strict
 * because Date.parse is not (it rolls 2024-02-30 over to March 1) and the webhook order
 * rests on it.
 */
export function rfc3339Micros(s: string): number {
  const m = typeof s === 'string' ? RFC3339.exec(s) : null
  if (!m) return Number.NaN
  const [y, mo, d, h, mi, se] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ]
  const leap = y % 4 === 0 && (y % 100 !== 0 || y % 400 === 0)
  const days = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][mo - 1]
  if (days === undefined || d < 1 || d > days || h > 23 || mi > 59 || se > 59) return Number.NaN
  let offsetMin = 0
  if (!m[8]) {
    const oh = Number(m[10])
    const om = Number(m[11])
    if (oh > 23 || om > 59) return Number.NaN
    offsetMin = (m[9] === '-' ? -1 : 1) * (oh * 60 + om)
  }
  const date = new Date(0)
  date.setUTCFullYear(y, mo - 1, d) // not Date.UTC: it maps years 0–99 to 1900–1999
  date.setUTCHours(h, mi, se, 0)
  const frac = (m[7] ?? '').padEnd(6, '0').slice(0, 6)
  return (date.getTime() - offsetMin * 60_000) * 1000 + Number(frac)
}

/** True for an RFC 3339 timestamp that rfc3339Micros reads. */
export function isRfc3339(s: unknown): s is string {
  return typeof s === 'string' && !Number.isNaN(rfc3339Micros(s))
}
