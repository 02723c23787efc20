// The documented enrolment sequence, end to end through the CLI: the POP makes its key,
// the CA signs its CSR, the core registers it, `clavitor core pop-api` serves it, the POP
// client gets the feed; revoking the certificate shuts it out.
import t from 'tap'
import { copyFileSync, mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createServer, type AddressInfo } from 'node:net'
import { execa } from 'execa'
import { PopApiClient } from '../../lib/auth/pop-client.js'
import { popAuthPaths } from '../../lib/auth/ca.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const env = { ...process.env, CLAVITOR_PROTECTION: 'off', CLAVITOR_LOG_LEVEL: 'warn' }
const cla = (...args: string[]) => execa(CLI, args, { env })

async function freePort(): Promise<number> {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const p = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return p
}

t.test('enrol a POP with the CLI and serve it', async (t) => {
  const root = mkdtempSync(join(tmpdir(), 'cla-enroll-'))
  t.teardown(() => rmSync(root, { recursive: true, force: true }))
  const core = join(root, 'core')
  const pop = join(root, 'pop')

  await cla('ca', 'init', '--data', core)
  t.equal(statSync(join(core, 'ca', 'ca.key')).mode & 0o777, 0o600, 'CA key is 0600')
  await cla('pop', 'init', '--data', pop, '--id', 'ams1')
  t.equal(statSync(popAuthPaths(pop).key).mode & 0o777, 0o600, 'POP key is 0600')
  const certFile = join(root, 'ams1.pem')
  await cla(
    'ca',
    'issue-pop',
    '--data',
    core,
    '--id',
    'ams1',
    '--csr',
    popAuthPaths(pop).csr,
    '--out',
    certFile,
  )
  copyFileSync(certFile, popAuthPaths(pop).cert)
  copyFileSync(join(core, 'ca', 'ca.pem'), popAuthPaths(pop).ca)
  await cla(
    'core',
    'pop',
    'add',
    '--data',
    core,
    '--id',
    'ams1',
    '--cert',
    certFile,
    '--allow',
    '127.0.0.1/32',
  )
  const list = JSON.parse(
    (await cla('core', 'pop', 'list', '--data', core, '--json')).stdout,
  ) as Array<{ id: string }>
  t.same(
    list.map((p) => p.id),
    ['ams1'],
  )

  const port = await freePort()
  const server = execa(CLI, ['core', 'pop-api', '--data', core, '--listen', `127.0.0.1:${port}`], {
    env,
    reject: false,
  })
  t.teardown(() => {
    server.kill('SIGKILL')
  })
  const client = PopApiClient.fromDataDir(pop, {
    baseUrl: `https://127.0.0.1:${port}`,
    popId: 'ams1',
  })
  t.teardown(() => client.close())
  let res
  for (let i = 0; i < 100; i++) {
    res = await client.request('GET', '/pop/v1/feed').catch((e: Error) => e)
    if (!(res instanceof Error)) break
    await new Promise((r) => setTimeout(r, 100))
  }
  t.notOk(res instanceof Error, 'the POP API came up')
  t.equal((res as { status: number }).status, 200)

  await cla('ca', 'revoke', '--data', core, '--id', 'ams1')
  const after = await client.request('GET', '/pop/v1/feed')
  t.equal(after.status, 401, 'revoked: refused on the kept-alive connection')

  server.kill('SIGTERM')
  const r = await server
  t.equal(r.exitCode, 0, 'clean shutdown on SIGTERM')
  const v = await cla('audit', 'verify', '--data', core)
  t.match(v.stdout, /audit chain intact/)
  const rows = JSON.parse(
    (await cla('audit', 'list', '--data', core, '--json', '--limit', '1000')).stdout,
  ) as Array<{ reason: string | null; outcome: string }>
  t.ok(rows.some((e) => e.reason === 'cert_revoked' && e.outcome === 'refused'))
})
