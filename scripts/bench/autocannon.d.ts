// The little of autocannon's API the benchmarks use (it ships no types).
declare module 'autocannon' {
  namespace autocannon {
    interface Options {
      url: string
      connections?: number
      duration?: number
      requests?: Array<{ setupRequest?: (req: Record<string, unknown>) => Record<string, unknown> }>
    }
    interface Result {
      requests: { average: number; total: number }
      latency: { p50: number; p99: number; average: number }
      errors: number
      non2xx: number
    }
  }
  function autocannon(
    opts: autocannon.Options,
    cb: (err: Error | null, res: autocannon.Result) => void,
  ): unknown
  export default autocannon
}
