import t from 'tap'
import { Writable } from 'node:stream'
import { createLogger } from '../../lib/log.js'

function capture() {
  const lines: string[] = []
  const destination = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk))
      cb()
    },
  })
  return { lines, destination }
}

t.test('secrets and tokens are redacted, the rest is kept', async (t) => {
  const { lines, destination } = capture()
  const log = createLogger({ level: 'info', destination })
  log.child({ component: 'auth' }).info(
    {
      token: 'tok-123',
      body: { refresh_token: 'ref-456', apiKey: 'clv_x_secret', note: 'kept' },
      req: { headers: { authorization: 'Bearer abc', cookie: 'sid=1', host: 'h' } },
    },
    'issued',
  )
  const out = lines.join('')
  for (const secret of ['tok-123', 'ref-456', 'clv_x_secret', 'Bearer abc', 'sid=1']) {
    t.notMatch(out, secret, `${secret} is not logged`)
  }
  const rec = JSON.parse(out)
  t.equal(rec.component, 'auth')
  t.equal(rec.body.note, 'kept')
  t.equal(rec.req.headers.host, 'h')
  t.equal(rec.msg, 'issued')
})
