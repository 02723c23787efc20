// Our Paddle client (lib/billing/paddle-client.ts) against Paddle's official Node SDK, on
// the same calls to the fake Paddle on loopback: wall time per request and the RSS a
// process pays for loading each. A benchmark, not part of the package. Run with
// `npm run bench:paddle [-- --requests N]`; figures in docs/billing.md.
import { Command } from 'commander'
import { Paddle, type Environment } from '@paddle/paddle-node-sdk'
import { PaddleClient } from '../../lib/billing/paddle-client.js'
import { startFakePaddle } from '../fake-paddle/server.js'

const program = new Command()
  .option('--requests <n>', 'requests per client and kind', '500')
  .parse()
const n = Number(program.opts<{ requests: string }>().requests)
if (!Number.isSafeInteger(n) || n < 10) throw new Error('--requests must be a whole number ≥ 10')

const key = 'pdl_sdbx_apikey_bench'
const fake = await startFakePaddle({ apiKey: key })
const ours = new PaddleClient({ baseUrl: fake.url, apiKey: key, requestsPerMinute: 1e9 })
const sdk = new Paddle(key, { environment: fake.url as Environment })
const ctm = await sdk.customers.create({ email: 'bench@example.com' })

async function time(label: string, fn: () => Promise<unknown>): Promise<[string, number]> {
  for (let i = 0; i < 20; i++) await fn() // warm-up
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < n; i++) await fn()
  return [label, Number(process.hrtime.bigint() - t0) / 1e3 / n]
}
const rows = [
  await time('GET /customers/{id}: ours', () => ours.get(`/customers/${ctm.id}`)),
  await time('GET /customers/{id}: Paddle SDK', () => sdk.customers.get(ctm.id)),
  await time('PATCH /customers/{id}: ours', () =>
    ours.patch(`/customers/${ctm.id}`, { name: 'x' }),
  ),
  await time('PATCH /customers/{id}: Paddle SDK', () =>
    sdk.customers.update(ctm.id, { name: 'x' }),
  ),
]
console.log(`\n${n} sequential requests each, fake Paddle on loopback\n`)
console.log('| call | µs per request |\n| --- | ---: |')
for (const [label, us] of rows) console.log(`| ${label} | ${us.toFixed(0)} |`)
await fake.close()
