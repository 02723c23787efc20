// lib/address-budgets.ts: one fixed window per key, as @fastify/rate-limit's LocalStore
// counts (the plugin and the POP's fast path share one instance); tryCount counts only
// what fits; the keys are bounded, least recently seen first out.
import t from 'tap'
import { ManualClock } from '../../lib/clock.js'
import { AddressBudgets } from '../../lib/address-budgets.js'

t.test('count: a window opens at the first request and counts past max', async (t) => {
  const clock = new ManualClock(1_000_000)
  const b = new AddressBudgets({ max: 2, windowMs: 60_000, keys: 10, clock })
  t.same(b.count('a'), { current: 1, ttl: 60_000 })
  clock.advance(10_000)
  t.same(b.count('a'), { current: 2, ttl: 50_000 })
  t.same(b.count('a'), { current: 3, ttl: 50_000 }, 'over max: counted, the caller refuses')
  t.same(b.count('b'), { current: 1, ttl: 60_000 }, 'another key has its own')
  clock.advance(50_000)
  t.same(b.count('a'), { current: 1, ttl: 60_000 }, 'the window ended: a new one')
})

t.test('tryCount counts only what fits; uncount takes one back', async (t) => {
  const clock = new ManualClock(0)
  const b = new AddressBudgets({ max: 2, windowMs: 1000, keys: 10, clock })
  t.same(b.tryCount('a'), { current: 1, ttl: 1000 })
  t.same(b.tryCount('a'), { current: 2, ttl: 1000 })
  t.equal(b.tryCount('a'), undefined, 'full: nothing counted')
  t.same(b.count('a'), { current: 3, ttl: 1000 }, 'the refusing path counts it')
  b.uncount('a')
  b.uncount('a')
  t.same(b.tryCount('a'), { current: 2, ttl: 1000 })
  clock.advance(1000)
  t.same(b.tryCount('a'), { current: 1, ttl: 1000 }, 'a new window')
})

t.test('at most `keys` keys, the least recently counted first out', async (t) => {
  const b = new AddressBudgets({ max: 5, windowMs: 60_000, keys: 2, clock: new ManualClock(0) })
  b.count('a')
  b.count('b')
  b.count('a') // b is now the least recently seen
  b.count('c')
  t.equal(b.size, 2)
  t.same(b.count('a'), { current: 3, ttl: 60_000 }, 'a was kept')
  t.same(b.count('b'), { current: 1, ttl: 60_000 }, 'b was dropped: a fresh budget')
  t.throws(() => new AddressBudgets({ max: 0, windowMs: 1, keys: 1 }), RangeError)
})
