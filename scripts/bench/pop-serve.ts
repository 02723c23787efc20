// Serves a POP's WL3 lookups only (no scheduler), for bench:sync. Args: DATA_DIR PORT.
import { openPop } from '../../lib/pop.js'
import { buildPopApp } from '../../pop-agent/app.js'

const [dataDir, port] = process.argv.slice(2)
const pop = await openPop({
  dataDir: dataDir!,
  popId: 'bench-pop',
  coreUrl: 'http://127.0.0.1:9',
  rsyncSource: '/nonexistent',
})
// no rate limit: the comparison with nginx (which has none) is like for like
const app = await buildPopApp({ pop, rateLimit: false })
await app.listen({ host: '127.0.0.1', port: Number(port) })
const stop = async () => {
  await app.close()
  await pop.close()
  process.exit(0)
}
process.on('SIGTERM', () => void stop())
process.on('SIGINT', () => void stop())
