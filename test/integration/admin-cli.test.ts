// `clavitor admin …` end to end through the real CLI entry (tsx).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { openCore } from '../../lib/core.js'
import { seedAdmin } from '../fixtures/admin.js'

const CLI = join(process.cwd(), 'scripts', 'clavitor')
const env = { ...process.env, CLAVITOR_PROTECTION: 'off' }
const run = (...args: string[]) => spawnSync(CLI, args, { encoding: 'utf8', env })

const dir = mkdtempSync(join(tmpdir(), 'clavitor-admin-cli-'))
t.teardown(() => {
  spawnSync('chattr', ['-R', '-i', '-a', dir])
  rmSync(dir, { recursive: true, force: true })
})

t.test('setup-url while no admin; invite with a role; list; disable', async (t) => {
  const first = run(
    'admin',
    'setup-url',
    '--data',
    dir,
    '--origin',
    'https://admin.example.com/ignored',
  )
  t.equal(first.status, 0, first.stderr)
  t.match(first.stdout, /^https:\/\/admin\.example\.com\/admin\/setup\?token=[A-Za-z0-9_-]{43}\n$/)

  const inv = run(
    'admin',
    'invite',
    '--data',
    dir,
    '--role',
    'operator',
    '--ttl-hours',
    '2',
    '--json',
  )
  t.equal(inv.status, 0, inv.stderr)
  const j = JSON.parse(inv.stdout) as { url: string; role: string; expires_at: string }
  t.equal(j.role, 'operator')
  t.match(j.url, /^http:\/\/localhost:8080\/admin\/setup\?token=/)
  t.ok(Date.parse(j.expires_at) - Date.now() < 2 * 3600_000 + 60_000)

  const bad = run('admin', 'invite', '--data', dir, '--role', 'root')
  t.equal(bad.status, 2, 'bad role is bad input')
  t.match(bad.stderr, /must be one of owner, operator, viewer/)

  const core = await openCore({ dataDir: dir })
  seedAdmin(core.db, 'owner', 'Olga')
  seedAdmin(core.db, 'viewer', 'Vic')
  await core.close()

  const again = run('admin', 'setup-url', '--data', dir)
  t.equal(again.status, 2, 'no setup URL once an admin exists')
  const list = run('admin', 'list', '--data', dir, '--json')
  t.equal(list.status, 0, list.stderr)
  t.match(JSON.parse(list.stdout), [
    { name: 'Olga', role: 'owner' },
    { name: 'Vic', role: 'viewer' },
  ])
  const promote = run('admin', 'role', 'Vic', 'operator', '--data', dir)
  t.equal(promote.status, 0, promote.stderr)
  t.equal(promote.stdout, 'Vic: viewer -> operator\n')
  const noRole = run('admin', 'role', 'Vic', 'root', '--data', dir)
  t.equal(noRole.status, 2, `a role that does not exist: ${noRole.stderr}`)
  const demoteLast = run('admin', 'role', 'Olga', 'viewer', '--data', dir)
  t.equal(demoteLast.status, 2, demoteLast.stderr)
  t.match(demoteLast.stderr, /last owner/)
  t.equal(run('admin', 'role', 'Vic', 'viewer', '--data', dir).status, 0)
  const dv = run('admin', 'disable', 'Vic', '--data', dir)
  t.equal(dv.status, 0, dv.stderr)
  const lastOwner = run('admin', 'disable', 'Olga', '--data', dir)
  t.equal(lastOwner.status, 2, `not the last owner: ${lastOwner.stderr}`)
  t.match(lastOwner.stderr, /last owner/)
  const nobody = run('admin', 'disable', 'Nobody', '--data', dir)
  t.equal(nobody.status, 2, nobody.stderr)
  const after = run('admin', 'list', '--data', dir)
  t.match(after.stdout, /Vic\tviewer\t0 key\(s\)\tdisabled/, after.stderr)
})
