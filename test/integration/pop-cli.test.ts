// The CLI contract of the sync commands: options from flags, env and --config; bad input
// is exit 2 with one line; core rsyncd-config and core pops print what the docs say.
import t from 'tap'
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { openDb } from '../../lib/db/open.js'
import { recordReport } from '../../lib/core-sync/pop-state.js'
import { tempDir } from '../fixtures/sync.js'

const CLI = new URL('../../scripts/clavitor', import.meta.url).pathname
const run = (args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(CLI, args, { encoding: 'utf8', env: { ...process.env, ...env } })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

t.test('pop sync: bad input is exit 2 with one line', async (t) => {
  const dir = tempDir(t)
  const missing = run(
    ['pop', 'sync', '--once', '--data', dir, '--id', 'p1', '--rsync-source', dir],
    { CLAVITOR_CORE_URL: '' },
  )
  t.equal(missing.code, 2)
  t.match(missing.err, /^clavitor: CLA_ERR_INVALID_OPTION: --core is required/)
  t.equal(missing.err.trim().split('\n').length, 1)
  const cfg = join(dir, 'pop.json')
  writeFileSync(
    cfg,
    JSON.stringify({
      data: dir,
      id: 'p1',
      core: 'http://127.0.0.1:9',
      rsyncSource: dir,
      colour: 'red',
    }),
  )
  const unknown = run(['pop', 'sync', '--config', cfg])
  t.equal(unknown.code, 2)
  t.match(unknown.err, /unknown key "colour"/)
  writeFileSync(
    cfg,
    JSON.stringify({
      data: dir,
      id: 'p1',
      core: 'http://127.0.0.1:9',
      rsyncSource: dir,
      pageSize: 0,
    }),
  )
  const badPage = run(['pop', 'sync', '--config', cfg])
  t.equal(badPage.code, 2)
  t.match(badPage.err, /--page-size must be an integer from 1 to 5000/)
  // flags and env override the file: a bad listen from env is refused for `run`
  writeFileSync(
    cfg,
    JSON.stringify({ data: dir, id: 'p1', core: 'http://127.0.0.1:9', rsyncSource: dir }),
  )
  const badCache = run(['pop', 'run', '--config', cfg, '--listen', '127.0.0.1:1'], {
    CLAVITOR_LOOKUP_CACHE_MB: '-5',
  })
  t.equal(badCache.code, 2)
  t.match(
    badCache.err.trim(),
    /^clavitor: CLA_ERR_INVALID_OPTION: --lookup-cache-mb must be an integer from 0 to 1048576; got -5$/,
  )
  const badListen = run(['pop', 'run', '--config', cfg], { CLAVITOR_LISTEN: 'nope' })
  t.equal(badListen.code, 2)
  t.match(badListen.err, /--listen must be HOST:PORT/)
  // a data folder without a store: exit 2, says what to run
  const noStore = run(['pop', 'sync', '--config', cfg])
  t.equal(noStore.code, 2)
  t.match(noStore.err, /CLA_ERR_STORE_NOT_INITIALIZED/)
})

t.test('core rsyncd-config and core pops', async (t) => {
  const dir = tempDir(t)
  const conf = run([
    'core',
    'rsyncd-config',
    '--data',
    join(dir, 'core'),
    '--port',
    '8730',
    '--hosts-allow',
    '192.0.2.0/24',
  ])
  t.equal(conf.code, 0, conf.err)
  t.match(conf.out, /\[clavitor-store\]/)
  t.match(conf.out, new RegExp(`path = ${join(dir, 'core', 'store')}\\n`))
  t.match(conf.out, /read only = yes/)
  t.match(conf.out, /hosts allow = 192\.0\.2\.0\/24/)
  const bad = run(['core', 'rsyncd-config', '--data', dir, '--auth-user', 'x'])
  t.equal(bad.code, 2, 'auth users without a secrets file')

  mkdirSync(join(dir, 'core'))
  const db = openDb(join(dir, 'core', 'meta.db'))
  db.prepare("INSERT INTO pops (id, name, created_at) VALUES ('ams1', 'Amsterdam', 1)").run()
  recordReport(
    db,
    'ams1',
    { cursor: null, ok: false, error: { code: 'CLA_ERR_SYNC_NETWORK', message: 'cut' } },
    5,
  )
  db.close()
  const pops = run(['core', 'pops', '--data', join(dir, 'core')])
  t.equal(pops.code, 0, pops.err)
  const list = JSON.parse(pops.out)
  t.equal(list[0].id, 'ams1')
  t.equal(list[0].sync.last_error, 'CLA_ERR_SYNC_NETWORK: cut')
})
