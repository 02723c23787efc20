// The generated rsyncd.conf served by a real rsync daemon on 127.0.0.1 (a second process,
// hence here): the listed files served, an unknown module refused, the module list
// empty, uploads refused. The transport and the config text themselves:
// test/lib/pop-sync/rsync.test.ts; the daemon with per-POP auth: rsync-channel.test.ts.
import t from 'tap'
import { spawn, execFileSync } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { runRsync } from '../../lib/pop-sync/rsync.js'
import { renderRsyncdConfig } from '../../lib/core-sync/rsyncd-config.js'
import { isRoot, tempDir } from '../fixtures/sync.js'

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const port = (srv.address() as { port: number }).port
  await new Promise((r) => srv.close(r))
  return port
}

function makeTree(root: string, n: number): string[] {
  const rels: string[] = []
  for (let i = 0; i < n; i++) {
    const p0 = `${i.toString(16).padStart(2, '0')}${'ab'.repeat(15)}`
    const rel = `${p0.slice(0, 2)}/${p0}/${String(1_700_000_000_000_000 + i).padStart(16, '0')}_0123456789abcdef.cla`
    mkdirSync(join(root, rel, '..'), { recursive: true })
    writeFileSync(join(root, rel), `blob ${i}`)
    rels.push(rel)
  }
  return rels
}

t.test(
  'a real daemon with the generated config serves the listed files, read-only',
  { skip: !isRoot && 'the daemon chroots: needs root' },
  async (t) => {
    const dir = tempDir(t)
    const root = join(dir, 'store')
    const rels = makeTree(root, 3)
    execFileSync('chmod', ['-R', 'a+rX', root])
    const port = await freePort()
    const confFile = join(dir, 'rsyncd.conf')
    writeFileSync(
      confFile,
      renderRsyncdConfig({
        storeRoot: root,
        address: '127.0.0.1',
        port,
        pidFile: join(dir, 'rsyncd.pid'),
        logFile: join(dir, 'rsyncd.log'),
      }),
    )
    const daemon = spawn('rsync', ['--daemon', '--no-detach', `--config=${confFile}`], {
      stdio: 'ignore',
    })
    t.teardown(() => {
      daemon.kill('SIGTERM')
    })
    // wait for the port
    for (let i = 0; i < 50; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = createServer()
        s.once('error', () => r(true))
        s.listen(port, '127.0.0.1', () => s.close(() => r(false)))
      })
      if (ok) break
      await new Promise((r) => setTimeout(r, 100))
    }
    const dest = join(dir, 'dest')
    mkdirSync(dest)
    const src = `rsync://127.0.0.1:${port}/clavitor-store/`
    const r = await runRsync({
      source: src,
      files: rels,
      listFile: join(dir, 'l'),
      dest,
      ioTimeoutSec: 10,
    })
    t.equal(r.exitCode, 0)
    t.equal(readFileSync(join(dest, rels[1]!), 'utf8'), 'blob 1')
    await t.rejects(
      runRsync({
        source: `rsync://127.0.0.1:${port}/other/`,
        files: rels,
        listFile: join(dir, 'l'),
        dest,
        ioTimeoutSec: 10,
      }),
      { code: 'CLA_ERR_SYNC_RSYNC_AUTH', details: { rsync_exit: 5, reason: 'unknown_module' } },
      'unknown module: exit 5, refused by the daemon (it hides modules from refused hosts too)',
    )
    // list = no: the module list is empty
    const listing = execFileSync('rsync', [`rsync://127.0.0.1:${port}/`], { encoding: 'utf8' })
    t.notMatch(listing, /clavitor-store/)
    // read only = yes: an upload is refused
    writeFileSync(join(dir, 'evil.cla'), 'x')
    let refused = false
    try {
      execFileSync(
        'rsync',
        [join(dir, 'evil.cla'), `rsync://127.0.0.1:${port}/clavitor-store/00/`],
        { stdio: 'pipe' },
      )
    } catch {
      refused = true
    }
    t.ok(refused, 'upload refused')
    t.notOk(existsSync(join(root, '00', 'evil.cla')))
  },
)
