// The soak's baseline (scripts/bench/soak.ts): a bare node:http server that takes the same
// POST, parses its JSON, hashes the WL3 and answers 201 with a body of the same size as the
// core's. What a Node process costs under this load with none of our code. Not part of the
// package.
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'

const port = Number(process.argv[2] ?? 0)
const server = createServer((req, res) => {
  const chunks: Buffer[] = []
  req.on('data', (c: Buffer) => chunks.push(c))
  req.on('end', () => {
    try {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { p0: string; wl3: string }
      const sha256 = createHash('sha256').update(Buffer.from(body.wl3, 'base64')).digest('hex')
      const out = JSON.stringify({
        p0: body.p0,
        vault_id: 'vlt_0000000000000000',
        seq: 1,
        created_at: Date.now() * 1000,
        sha256,
        size: 0,
        path: `${body.p0.slice(0, 2)}/${body.p0}/0_${sha256}.cla`,
        version: 1,
        replayed: false,
      })
      res.writeHead(201, { 'content-type': 'application/json' }).end(out)
    } catch {
      res.writeHead(400).end()
    }
  })
})
server.listen(port, '127.0.0.1', () => {
  const a = server.address()
  process.stdout.write(`${typeof a === 'object' && a ? a.port : 0}\n`)
})
process.on('SIGTERM', () => server.close(() => process.exit(0)))
