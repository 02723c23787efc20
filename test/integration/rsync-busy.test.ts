// The rsync daemon's connection slots (issue 13, item 7, in part): the generated config
// gives the module a lock file of its own (rsyncd's default is shared by every daemon on
// the host and needs root), and a POP that meets a full daemon gets an error that names
// the cause (CLA_ERR_SYNC_RSYNC_BUSY, reason max_connections), not a generic failure.
// A real daemon; one slot held by a client that stops after asking for the module, the
// way a stalled login holds it.
import t from 'tap'
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { join } from 'node:path'
import { execa } from 'execa'
import { rsyncError } from '../../lib/pop-sync/rsync.js'
import { renderRsyncdConfig } from '../../lib/core-sync/rsyncd-config.js'
import { tempDir } from '../fixtures/sync.js'

const dir = tempDir(t, 'cla-rsync-busy-')
const store = join(dir, 'store')
mkdirSync(join(store, 'ab'), { recursive: true })
writeFileSync(join(store, 'ab', 'x.cla'), 'x')
const free = async () => {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const p = (s.address() as AddressInfo).port
  await new Promise((r) => s.close(r))
  return p
}
const port = await free()
const lockFile = join(dir, 'rsyncd', 'rsyncd.lock')
mkdirSync(join(dir, 'rsyncd'))
const log = join(dir, 'rsyncd', 'rsyncd.log')
const conf = join(dir, 'rsyncd.conf')
const text = renderRsyncdConfig({
  storeRoot: store,
  address: '127.0.0.1',
  port,
  logFile: log,
  lockFile,
  maxConnections: 1,
  useChroot: false,
})
t.match(text, `lock file = ${lockFile}\n`, 'the module has its own lock file')
// not as root: no uid/gid lines (rsync would call setgroups, which only root may)
writeFileSync(conf, process.getuid?.() === 0 ? text : text.replace(/^\s*(uid|gid) = .*\n/gm, ''))
const daemon = execa('rsync', ['--daemon', '--no-detach', `--config=${conf}`], {
  reject: false,
  stdin: 'ignore',
})
t.teardown(() => void daemon.kill('SIGKILL'))
for (
  let i = 0;
  i < 100 && !(existsSync(log) && readFileSync(log, 'utf8').includes('listening on port'));
  i++
)
  await new Promise((r) => setTimeout(r, 100))

/** Asks for the module and stops there: the daemon has claimed a slot for it. */
async function holdSlot(): Promise<Socket> {
  const s = connect(port, '127.0.0.1')
  let got = ''
  await new Promise<void>((resolve, reject) => {
    s.on('error', reject)
    s.once('data', () => s.write('@RSYNCD: 31.0\nclavitor-store\n')) // after the greeting
    s.on('data', (d: Buffer) => {
      got += d.toString()
      if (got.includes('@RSYNCD: OK')) resolve()
    })
  })
  return s
}

const list = () =>
  execa('rsync', ['--list-only', `rsync://127.0.0.1:${port}/clavitor-store/`], {
    reject: false,
    detached: true,
  })

t.test('a full daemon: the POP error names the connection limit', async (t) => {
  t.equal((await list()).exitCode, 0, 'one slot free: the listing works')
  const held = await holdSlot()
  const r = await list()
  t.not(r.exitCode, 0, 'refused while the slot is held')
  const err = rsyncError(r.exitCode, r.stderr)
  t.equal(err.code, 'CLA_ERR_SYNC_RSYNC_BUSY', r.stderr)
  t.match(err.details, { reason: 'max_connections', max: 1 })
  t.match(err.message, /limit of 1 connections/)
  held.destroy()
  let ok = 1
  for (let i = 0; i < 100 && ok !== 0; i++) {
    ok = (await list()).exitCode ?? 1
    if (ok !== 0) await new Promise((r) => setTimeout(r, 100))
  }
  t.equal(ok, 0, 'the slot comes back when the stalled client goes')
})
