// Serves a POP's WL3 lookups only (no scheduler), for bench:sync and bench:lookups.
// Args: DATA_DIR PORT [--rate-limit] [--trust-proxy LIST] [--max-bytes N] [--fastify-only]
//   --rate-limit     the app's default per-address limit (pop-agent/app.ts); else none
//   --trust-proxy    X-Forwarded-For from these proxies names the client (the bench's many
//                    addresses behind one loopback peer)
//   --max-bytes      the lookup cache's size (default the POP's)
//   --fastify-only   no fast path (pop-agent/fast-lookups.ts): Fastify answers every lookup
import { openPop } from '../../lib/pop.js'
import { buildPopApp } from '../../pop-agent/app.js'

const args = process.argv.slice(2)
const [dataDir, port] = args
const flag = (name: string) => {
  const i = args.indexOf(name)
  return i < 0 ? undefined : args[i + 1]
}
const maxBytes = flag('--max-bytes')
const trustProxy = flag('--trust-proxy')
const pop = await openPop({
  dataDir: dataDir!,
  popId: 'bench-pop',
  coreUrl: 'http://127.0.0.1:9',
  rsyncSource: '/nonexistent',
  ...(maxBytes ? { lookup: { maxBytes: Number(maxBytes) } } : {}),
})
// measured warm, as a POP in service for a while: the cache filled before listening (what
// `pop run` does in the background once ready), its time on stderr
const t0 = process.hrtime.bigint()
const added = await pop.lookup.prefetch(256)
process.stderr.write(
  `pop-serve: prefetched ${added} answers (${pop.lookup.cachedBytes} bytes) in ${(Number(process.hrtime.bigint() - t0) / 1e9).toFixed(1)} s\n`,
)
// without --rate-limit no limit: the comparison with nginx (which has none) is like for like
const app = await buildPopApp({
  pop,
  prefetch: false,
  ...(args.includes('--fastify-only') ? { fastLookups: false } : {}),
  ...(args.includes('--rate-limit') ? {} : { rateLimit: false }),
  ...(trustProxy ? { trustProxy: trustProxy.split(',') } : {}),
})
await app.listen({ host: '127.0.0.1', port: Number(port) })
const stop = async () => {
  await app.close()
  await pop.close()
  process.exit(0)
}
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
