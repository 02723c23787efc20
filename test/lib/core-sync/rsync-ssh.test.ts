// The ssh variant of the rsync channel: the forced command of the generated
// authorized_keys line (rrsync -ro STORE) run the way sshd runs it (SSH_ORIGINAL_COMMAND
// set to what the client asked for). The POP's transport (runRsync over `-e ssh`) reads
// listed files; an upload, a delete, a path outside the store and a non-rsync command are
// refused. sshd itself is replaced by a small shell script (no sshd in tests).
import t from 'tap'
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { runRsync } from '../../../lib/pop-sync/rsync.js'
import { sshAuthorizedKeyLine } from '../../../lib/core-sync/rsync-auth.js'
import { tempDir } from '../../fixtures/sync.js'

const RRSYNC = '/usr/bin/rrsync'
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOm1yR2x3gJ0abcdef pop'

t.test(
  'rrsync -ro from the generated line',
  { skip: !existsSync(RRSYNC) && 'no rrsync' },
  async (t) => {
    const dir = tempDir(t)
    const store = join(dir, 'store')
    const rel = 'ab/abababababababababababababababab/0001700000000000_0123456789abcdef.cla'
    mkdirSync(join(store, rel, '..'), { recursive: true })
    writeFileSync(join(store, rel), 'blob')
    mkdirSync(join(dir, 'outside'))
    writeFileSync(join(dir, 'outside', 'secret'), 'secret')

    const line = sshAuthorizedKeyLine({ popId: 'ams1', publicKey: KEY, storeRoot: store })
    const forced = /command="([^"]+)"/.exec(line)![1]!
    t.equal(forced, `${RRSYNC} -ro ${store}`)
    // what sshd does with a forced command: run it through the shell, the client's command in
    // SSH_ORIGINAL_COMMAND (rsync -e calls: fake-ssh HOST rsync --server …)
    const fakeSsh = join(dir, 'fake-ssh')
    writeFileSync(
      fakeSsh,
      `#!/bin/sh\nshift\nSSH_ORIGINAL_COMMAND="$*" exec /bin/sh -c '${forced}'\n`,
    )
    chmodSync(fakeSsh, 0o755)
    const e = ['-e', fakeSsh]

    // a POP pull: the listed file arrives
    const dest = join(dir, 'dest')
    mkdirSync(dest)
    const r = await runRsync({
      source: 'core:/',
      files: [rel],
      listFile: join(dir, 'list'),
      dest,
      extraArgs: e,
    })
    t.same(r.transferred, [rel])
    t.equal(readFileSync(join(dest, rel), 'utf8'), 'blob')

    // an upload into the store: refused, nothing written
    const push = await execa('rsync', [...e, join(dir, 'list'), 'core:/'], { reject: false })
    t.not(push.exitCode, 0)
    t.match(push.stderr, /read-only/)
    t.same(readdirSync(store), ['ab'])
    // a delete: refused
    const del = await execa('rsync', [...e, '-r', '--delete', `${dest}/`, 'core:/'], {
      reject: false,
    })
    t.not(del.exitCode, 0)
    t.ok(existsSync(join(store, rel)), 'nothing deleted')
    // a path outside the store: refused
    const out = await execa('rsync', [...e, '-r', 'core:/../outside/', join(dir, 'got')], {
      reject: false,
    })
    t.not(out.exitCode, 0)
    t.match(out.stderr, /do not use \.\./)
    t.notOk(existsSync(join(dir, 'got', 'secret')), 'nothing from outside the store')
    // not rsync at all: refused
    const sh = await execa(fakeSsh, ['core', 'cat', join(dir, 'outside', 'secret')], {
      reject: false,
    })
    t.not(sh.exitCode, 0)
    t.notMatch(sh.stdout, /secret/)
  },
)
