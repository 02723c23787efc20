// The rsync transport with real rsync processes: exit codes mapped to typed errors, the
// arguments, the generated rsyncd.conf. A real daemon serving that config:
// test/integration/rsync-daemon.test.ts.
import t, { type Test } from 'tap'
import {
  existsSync,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { RSYNC_EXIT, rsyncArgs, rsyncError, runRsync } from '../../../lib/pop-sync/rsync.js'
import { renderRsyncdConfig, rsyncdModule } from '../../../lib/core-sync/rsyncd-config.js'
import { tempDir } from '../../fixtures/sync.js'

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

/** A temporary folder with a source tree of `n` blobs (`rels`) and an empty `dest`. */
function sourceAndDest(t: Test, n: number) {
  const dir = tempDir(t)
  const src = join(dir, 'src')
  const rels = makeTree(src, n)
  const dest = join(dir, 'dest')
  mkdirSync(dest)
  return { dir, src, rels, dest }
}

t.test('every documented exit code maps to a reason and an error class', async (t) => {
  for (const [code, spec] of Object.entries(RSYNC_EXIT)) {
    const e = rsyncError(Number(code), 'rsync: something\n')
    t.equal(e.code, spec.code, `exit ${code}`)
    t.equal(e.details?.reason, spec.reason)
    t.equal(e.details?.rsync_exit, Number(code))
  }
  t.equal(rsyncError(99, '').details?.reason, 'unknown_exit')
  t.equal(rsyncError(undefined, 'spawn rsync ENOENT').details?.reason, 'spawn')
  t.equal(
    rsyncError(11, 'write failed: No space left on device (28)').code,
    'CLA_ERR_SYNC_DISK_FULL',
  )
  t.equal(rsyncError(10, '').code, 'CLA_ERR_SYNC_NETWORK')
  t.equal(rsyncError(23, '').code, 'CLA_ERR_SYNC_PARTIAL')
})

t.test(
  'local source: the listed files only; a missing one is a partial transfer (23)',
  async (t) => {
    const { dir, src, rels, dest } = sourceAndDest(t, 6)
    makeTree(join(dir, 'unlisted'), 1)
    const r = await runRsync({
      source: src,
      files: rels.slice(0, 4),
      listFile: join(dir, 'l'),
      dest,
    })
    t.equal(r.exitCode, 0)
    t.same(r.transferred.sort(), rels.slice(0, 4).sort())
    t.ok(existsSync(join(dest, rels[0]!)))
    t.notOk(existsSync(join(dest, rels[5]!)), 'not listed, not fetched')
    t.equal(readFileSync(join(dir, 'l'), 'utf8').split('\0').length, 5, 'NUL-separated list')
    const missing = [rels[4]!, rels[4]!.replace('0123456789abcdef', 'ffffffffffffffff')]
    await t.rejects(runRsync({ source: src, files: missing, listFile: join(dir, 'l'), dest }), {
      code: 'CLA_ERR_SYNC_PARTIAL',
      details: { rsync_exit: 23, reason: 'partial' },
    })
    const tolerated = await runRsync(
      { source: src, files: missing, listFile: join(dir, 'l'), dest },
      { partial: true },
    )
    t.equal(tolerated.exitCode, 23)
    t.ok(existsSync(join(dest, rels[4]!)), 'what exists still arrives')
  },
)

t.test('network faults and aborts are typed', async (t) => {
  const dir = tempDir(t)
  const port = await freePort()
  await t.rejects(
    runRsync({
      source: `rsync://127.0.0.1:${port}/nothing/`,
      files: ['a'],
      listFile: join(dir, 'l'),
      dest: dir,
      ioTimeoutSec: 5,
    }),
    { code: 'CLA_ERR_SYNC_NETWORK', details: { rsync_exit: 10, reason: 'socket_io' } },
    'connection refused: exit 10',
  )
  const ac = new AbortController()
  ac.abort()
  await t.rejects(
    runRsync({
      source: join(dir, 'none'),
      files: ['a'],
      listFile: join(dir, 'l'),
      dest: dir,
      signal: ac.signal,
    }),
    { code: 'CLA_ERR_SYNC_ABORTED' },
  )
})

t.test('rsyncd.conf: read-only module over the store root only; auth hooks', async (t) => {
  const conf = renderRsyncdConfig({
    storeRoot: '/var/lib/clavitor/store',
    port: 8873,
    address: '192.0.2.1',
  })
  for (const line of [
    'read only = yes',
    'list = no',
    'use chroot = yes',
    'path = /var/lib/clavitor/store',
    'port = 8873',
    'address = 192.0.2.1',
    '[clavitor-store]',
  ])
    t.ok(conf.includes(line), line)
  t.match(conf, /refuse options = .*delete.*remove-source-files/)
  t.notMatch(conf, /hosts allow/, 'no allowlist unless given')
  const withAuth = rsyncdModule({
    storeRoot: '/s',
    auth: {
      hostsAllow: ['192.0.2.0/24', '2001:db8::/32'],
      authUsers: ['pop-a', 'pop-b'],
      secretsFile: '/etc/clavitor/rsyncd.secrets',
    },
  })
  const m = new Map(withAuth)
  t.equal(m.get('hosts allow'), '192.0.2.0/24 2001:db8::/32')
  t.equal(m.get('hosts deny'), '*')
  t.equal(m.get('auth users'), 'pop-a:ro, pop-b:ro')
  t.equal(m.get('secrets file'), '/etc/clavitor/rsyncd.secrets')
  t.throws(() => rsyncdModule({ storeRoot: 'relative' }), { code: 'CLA_ERR_INVALID_OPTION' })
  t.throws(() => rsyncdModule({ storeRoot: '/s', auth: { authUsers: ['x'] } }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
  t.throws(() => renderRsyncdConfig({ storeRoot: '/s\n[evil]' }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
  t.throws(() => renderRsyncdConfig({ storeRoot: '/s', module: 'a b' }), {
    code: 'CLA_ERR_INVALID_OPTION',
  })
})

t.test('arguments: TCP_NODELAY for a daemon source, --no-relative when flat', async (t) => {
  const base = { listFile: '/l', dest: '/d' }
  const daemon = rsyncArgs({ ...base, source: 'rsync://core:873/clavitor-store/' })
  t.ok(daemon.includes('--sockopts=TCP_NODELAY'), 'rsync:// source')
  t.ok(rsyncArgs({ ...base, source: 'core::clavitor-store' }).includes('--sockopts=TCP_NODELAY'))
  t.notOk(rsyncArgs({ ...base, source: '/srv/store' }).some((a) => a.startsWith('--sockopts')))
  t.notOk(daemon.includes('--no-relative'), 'tree layout by default')
  t.ok(rsyncArgs({ ...base, source: '/s', flat: true }).includes('--no-relative'))
})

t.test('flat: files land under their names; a name listed twice is refused', async (t) => {
  const { dir, src, rels, dest } = sourceAndDest(t, 3)
  const r = await runRsync({ source: src, files: rels, listFile: join(dir, 'l'), dest, flat: true })
  t.same(r.transferred.sort(), [...rels].sort(), 'reported by their feed paths')
  t.same(readdirSync(dest).sort(), rels.map((p) => p.split('/').pop()).sort(), 'flat')
  const twin = rels[0]!.replace(/^(..)\/\1[0-9a-f]+/, 'ff/ff' + 'cd'.repeat(15))
  await t.rejects(
    runRsync({ source: src, files: [rels[0]!, twin], listFile: join(dir, 'l2'), dest, flat: true }),
    { code: 'CLA_ERR_SYNC_FEED' },
  )
})

t.test(
  'a symlink on the sender never becomes one here: nothing is read or sealed through it',
  async (t) => {
    // the store holds folders and regular files only; a lying sender's symlink, as a shard
    // folder, a p0 folder or a file, would otherwise let the bootstrap's checks, seals and
    // sweep of the staged tree reach whatever it points at
    const { dir, src, rels, dest } = sourceAndDest(t, 2)
    const outside = join(dir, 'outside')
    makeTree(outside, 1)
    symlinkSync(join(outside, '00'), join(src, 'aa')) // a shard folder
    symlinkSync(
      join(outside, '00', `00${'ab'.repeat(15)}`),
      join(src, '01', `01${'cd'.repeat(15)}`),
    ) // a p0 folder
    symlinkSync(join(src, rels[0]!), join(src, '01', `01${'ab'.repeat(15)}`, 'link.cla')) // a file
    const r = await runRsync({
      source: src,
      files: ['00', '01', 'aa'],
      listFile: join(dir, 'l'),
      dest,
      reportAll: true,
    })
    t.equal(r.exitCode, 0)
    const links: string[] = []
    const walk = (d: string): void => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isSymbolicLink()) links.push(join(d, e.name))
        else if (e.isDirectory()) walk(join(d, e.name))
      }
    }
    walk(dest)
    t.same(links, [], 'no symlink was made')
    t.notOk(existsSync(join(dest, 'aa')), 'the symlinked shard: skipped')
    t.ok(lstatSync(join(dest, rels[1]!)).isFile(), 'the regular files came')
    t.notOk(
      r.written?.some((l) => l.startsWith('aa') || l.endsWith('link.cla')),
      'and none is reported as written',
    )
  },
)
