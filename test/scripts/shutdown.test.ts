// scripts/cli/common.ts shutdownHandler: what the serving commands do on SIGTERM / SIGINT,
// with a clock and an exit of the test's own (the real signals and exits are in
// test/integration/pop-run.test.ts).
import t from 'tap'
import { SECOND_SIGNAL_AFTER_MS, shutdownHandler } from '../../scripts/cli/common.js'

t.equal(SECOND_SIGNAL_AFTER_MS, 1000, 'docs/cli.md says a second')

function harness(stop: () => Promise<void>) {
  const seen = { exits: [] as number[], lines: [] as string[], errors: [] as unknown[], now: 0 }
  const handle = shutdownHandler({
    stop,
    onError: (err) => seen.errors.push(err),
    now: () => seen.now,
    exit: (code) => seen.exits.push(code),
    write: (line) => seen.lines.push(line),
  })
  return { seen, handle }
}

const never = () => new Promise<void>(() => {})

t.test('a stop that finishes exits 0; one that fails goes to onError and exits 1', async (t) => {
  const ok = harness(async () => {})
  ok.handle('SIGTERM')
  await new Promise((r) => setImmediate(r))
  t.same(ok.seen.exits, [0])
  const bad = harness(async () => {
    throw new Error('boom')
  })
  bad.handle('SIGINT')
  await new Promise((r) => setImmediate(r))
  t.same(bad.seen.exits, [1])
  t.match(bad.seen.errors, [{ message: 'boom' }])
})

t.test('the same signal delivered twice within a second (a forwarded Ctrl-C) is one', async (t) => {
  let stops = 0
  const { seen, handle } = harness(() => {
    stops++
    return never()
  })
  handle('SIGINT')
  seen.now += 999
  handle('SIGINT')
  t.equal(stops, 1, 'one stop')
  t.same(seen.exits, [], 'still stopping')
  t.same(seen.lines, [])
})

t.test(
  'a second signal a second or more after the first exits 1 at once, with one coded line',
  async (t) => {
    const { seen, handle } = harness(never)
    handle('SIGTERM')
    seen.now += 1000
    handle('SIGTERM')
    t.same(seen.exits, [1])
    t.same(seen.lines, [
      'clavitor: CLA_ERR_STOP_FORCED: SIGTERM while stopping: exiting now, the stop unfinished (the next start recovers)\n',
    ])
  },
)
