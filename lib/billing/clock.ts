// An injectable clock: every time decision in lib/billing goes through one of these, so
// tests can move time past the retry delay or a webhook's tolerance window.
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number
  /** Resolves after `ms` milliseconds (a test clock may resolve at once). */
  sleep(ms: number): Promise<void>
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
}

/** A clock that only moves when told to; sleep() advances it instead of waiting. */
export class ManualClock implements Clock {
  constructor(private t: number = Date.now()) {}
  now(): number {
    return this.t
  }
  advance(ms: number): void {
    this.t += ms
  }
  set(ms: number): void {
    this.t = ms
  }
  async sleep(ms: number): Promise<void> {
    this.t += ms
  }
}

export const micros = (clock: Clock): number => clock.now() * 1000

/** RFC 3339 (with up to microseconds) → µs since the epoch; NaN when malformed. */
export function rfc3339Micros(s: string): number {
  const m = /^(.*?T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$/i.exec(s)
  if (!m) return Number.NaN
  const base = Date.parse(`${m[1]}${m[3]}`)
  if (Number.isNaN(base)) return Number.NaN
  const frac = (m[2] ?? '').padEnd(6, '0').slice(0, 6)
  return base * 1000 + Number(frac)
}
