// The Paddle client sends its API key only under its base URL: an absolute URL from an
// answer (a pagination `next`) on another host, port or path, or a look-alike host name,
// is refused before any request leaves. Two real HTTP servers on loopback: "Paddle" and
// an elsewhere that records every Authorization header it is sent.
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { PaddleClient } from '../../../lib/billing/paddle-client.js'

async function listen(
  onAuth: (auth: string | undefined) => void,
): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    onAuth(req.headers.authorization)
    res.writeHead(200, { 'content-type': 'application/json' })
    res.end(JSON.stringify({ data: [], meta: { request_id: 'r', pagination: { next: null } } }))
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, server }
}

t.test('the API key goes only to the base URL', async (t) => {
  const atPaddle: Array<string | undefined> = []
  const elsewhere: Array<string | undefined> = []
  const paddle = await listen((a) => atPaddle.push(a))
  const other = await listen((a) => elsewhere.push(a))
  t.teardown(() => {
    paddle.server.close()
    other.server.close()
  })
  const client = new PaddleClient({ baseUrl: `${paddle.url}/v1`, apiKey: 'pdl_secret_key' })

  const ok = await client.request('GET', '/customers')
  t.equal(ok.status, 200)
  t.equal(
    (await client.request('GET', `${paddle.url}/v1/customers?after=ctm_1`)).status,
    200,
    'a next link under the base URL is followed',
  )
  t.same(atPaddle, ['Bearer pdl_secret_key', 'Bearer pdl_secret_key'])

  const host = new URL(paddle.url)
  for (const url of [
    `${other.url}/v1/customers`, // another port
    `http://localhost:${host.port}/v1/customers`, // another host name
    `${paddle.url}/v2/customers`, // outside the base path
    `${paddle.url}/v1evil/customers`, // a look-alike path
    `http://127.0.0.1:${host.port}.evil.example/v1/customers`, // not even a URL
  ]) {
    await t.rejects(
      client.request('GET', url),
      { code: 'CLA_ERR_PADDLE_REJECTED', message: /refusing to send the Paddle API key/ },
      url,
    )
  }
  t.same(elsewhere, [], 'nothing reached the other server')
  t.equal(atPaddle.length, 2, 'nor Paddle itself for the refused ones')
})
