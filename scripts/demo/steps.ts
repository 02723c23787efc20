// The demo's progress printer: one line per step, ✓ or ✗, its duration and a short detail.
// A failed step throws on (the caller cleans up); every step is kept for the JSON report.

export interface StepRecord {
  n: number
  title: string
  ok: boolean
  ms: number
  detail: string | null
  error?: string
}

export class StepFailed extends Error {
  constructor(
    readonly step: StepRecord,
    cause: unknown,
  ) {
    super(`step ${step.n} (${step.title}) failed: ${step.error ?? 'unknown error'}`, { cause })
  }
}

export class Steps {
  readonly records: StepRecord[] = []

  constructor(
    private readonly write: (line: string) => void,
    private readonly signal?: AbortSignal,
  ) {}

  /**
   * Runs `fn` as the next step; prints `✓ n. title: detail (ms)` or `✗ …: error`. A step
   * that throws stops the run (StepFailed); one that returns a value `isOk` refuses prints
   * ✗ and the run goes on (its checks end up in the report). Aborted: no further step runs.
   */
  async run<T>(
    title: string,
    fn: () => Promise<T> | T,
    detail?: (v: T) => string | null,
    isOk?: (v: T) => boolean,
  ): Promise<T> {
    const n = this.records.length + 1
    const t0 = performance.now()
    try {
      if (this.signal?.aborted) throw new Error('interrupted (signal)')
      const v = await fn()
      const rec: StepRecord = {
        n,
        title,
        ok: isOk ? isOk(v) : true,
        ms: Math.round(performance.now() - t0),
        detail: detail ? detail(v) : null,
      }
      this.records.push(rec)
      this.write(
        `${rec.ok ? '✓' : '✗'} ${String(n).padStart(2)}. ${title}${rec.detail ? `: ${rec.detail}` : ''} (${fmtMs(rec.ms)})`,
      )
      return v
    } catch (err) {
      const rec: StepRecord = {
        n,
        title,
        ok: false,
        ms: Math.round(performance.now() - t0),
        detail: null,
        error: messageOf(err),
      }
      this.records.push(rec)
      this.write(`✗ ${String(n).padStart(2)}. ${title}: ${rec.error} (${fmtMs(rec.ms)})`)
      throw new StepFailed(rec, err)
    }
  }
}

export function fmtMs(ms: number): string {
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`
}

export function messageOf(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && 'message' in err) {
    const e = err as { code: unknown; message: unknown }
    if (typeof e.code === 'string' && e.code.startsWith('CLA_ERR_'))
      return `${e.code}: ${String(e.message)}`
  }
  return err instanceof Error ? err.message : String(err)
}
