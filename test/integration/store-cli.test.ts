// The `clavitor store …` CLI contract, by spawning scripts/clavitor for real.
import t from 'tap'
import { execFileSync } from 'node:child_process'
import { readFileSync, writeFileSync, existsSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { BlobStore } from '../../lib/store/index.js'
import { REPO, tempData, P0A, P0B } from '../fixtures/store/helpers.js'

const clavitor = (args: string[], input?: Buffer | string) =>
  execa(join(REPO, 'scripts/clavitor'), args, {
    reject: false,
    input: input ?? '',
    encoding: 'buffer',
    env: { CLAVITOR_PROTECTION: 'best-effort' },
  })
const text = (b: unknown) => Buffer.from(b as Uint8Array).toString()

t.test('store CLI: init, put, get, versions, verify, status, bad input', async (t) => {
  const data = tempData(t)
  const init = await clavitor(['store', 'init', '--data', data])
  t.equal(init.exitCode, 0, text(init.stderr))
  const id = JSON.parse(text(init.stdout))
  t.match(id, {
    store_id: /^[0-9a-f]{32}$/,
    role: 'core',
    key_id: /^[0-9a-f]{32}$/,
    protection: { mode: 'best-effort' },
  })

  const payloadFile = join(data, '..', 'payload.bin')
  const binary = Buffer.from([0, 1, 2, 255, 10, 13, 0])
  writeFileSync(payloadFile, binary)
  const put1 = await clavitor(['store', 'put', '--data', data, '--p0', P0A, '--file', payloadFile])
  t.equal(put1.exitCode, 0, text(put1.stderr))
  const info1 = JSON.parse(text(put1.stdout))
  t.match(info1, { p0: P0A, seq: 1, size: 7, created_at: Number, sha256: /^[0-9a-f]{64}$/ })
  t.ok(existsSync(join(data, 'store', info1.path)), 'path is relative to the store root')

  const put2 = await clavitor(['store', 'put', '--data', data, '--p0', P0A], 'from stdin')
  t.equal(put2.exitCode, 0, text(put2.stderr))
  t.match(JSON.parse(text(put2.stdout)), { seq: 2, size: 10 })

  const get = await clavitor(['store', 'get', '--data', data, '--p0', P0A])
  t.equal(get.exitCode, 0)
  t.equal(text(get.stdout), 'from stdin', 'get writes the latest payload, bytes only')
  const getOld = await clavitor(['store', 'get', '--data', data, '--p0', P0A, '--seq', '1'])
  t.same(Buffer.from(getOld.stdout as Uint8Array), binary, 'binary-safe')

  const versions = await clavitor(['store', 'versions', '--data', data, '--p0', P0A])
  t.same(
    JSON.parse(text(versions.stdout)).map((v: { seq: number }) => v.seq),
    [1, 2],
  )

  // bad input: exit 2, one line, nothing written
  for (const args of [
    ['store', 'put', '--data', data, '--p0', P0A.toUpperCase()],
    ['store', 'put', '--data', data, '--p0', '../../' + P0A],
    ['store', 'put', '--data', data, '--p0', P0B, '--file', join(data, 'nope')],
  ]) {
    const r = await clavitor(args, 'payload')
    t.equal(r.exitCode, 2, args.join(' '))
    t.equal(text(r.stderr).trim().split('\n').length, 1, 'one line')
    t.match(text(r.stderr), /^clavitor: CLA_ERR_/)
  }
  const noStore = await clavitor(['store', 'status', '--data', join(data, '..', 'empty')])
  t.equal(noStore.exitCode, 2)
  t.match(text(noStore.stderr), /store init/)
  t.notOk(existsSync(join(data, '..', 'empty')), 'nothing created')

  const ok = await clavitor(['store', 'verify', '--data', data])
  t.equal(ok.exitCode, 0)
  t.match(JSON.parse(text(ok.stdout)), { ok: true, files: 2, indexed: 2 })

  const status = await clavitor(['store', 'status', '--data', data])
  const st = JSON.parse(text(status.stdout))
  t.match(st, {
    blobs: 2,
    p0s: 1,
    store_id: id.store_id,
    protection: { mode: 'best-effort', honoured: Boolean },
  })

  // tamper with a file behind the store's back: verify exits 1 with a report
  const victim = join(data, 'store', info1.path)
  try {
    execFileSync('chattr', ['-i', victim], { stdio: 'ignore' })
  } catch {
    // not sealed here
  }
  const bytes = readFileSync(victim)
  bytes[bytes.length - 1]! ^= 0xff
  writeFileSync(victim, bytes)
  const bad = await clavitor(['store', 'verify', '--data', data])
  t.equal(bad.exitCode, 1)
  const report = JSON.parse(text(bad.stdout))
  t.equal(report.ok, false)
  t.same(
    report.corrupt.map((c: { path: string; code: string }) => [c.path, c.code]),
    [[info1.path, 'CLA_ERR_BAD_SIGNATURE']],
  )
  const rb = await clavitor(['store', 'rebuild-index', '--data', data])
  t.equal(rb.exitCode, 0, text(rb.stderr))
  t.match(JSON.parse(text(rb.stdout)), { scanned: 2, alreadyIndexed: 2, indexed: 0 })
  // status and the library agree on the row count
  const s = await BlobStore.open({ dataDir: data, onWarning: () => {} })
  t.equal(s.status().blobs, 2)
  await s.close()
})

t.test('store CLI: a POP store trusts the core key', async (t) => {
  const core = tempData(t)
  const pop = tempData(t)
  t.equal((await clavitor(['store', 'init', '--data', core, '--protection', 'off'])).exitCode, 0)
  const keyFile = join(core, '..', 'core.pub')
  const pk = await clavitor(['store', 'public-key', '--data', core, '--out', keyFile])
  t.equal(pk.exitCode, 0, text(pk.stderr))
  const { key_id } = JSON.parse(text(pk.stdout))
  t.equal(readFileSync(keyFile).length, 32)
  const popInit = await clavitor([
    'store',
    'init',
    '--data',
    pop,
    '--pop',
    '--trust-key',
    keyFile,
    '--protection',
    'off',
  ])
  t.equal(popInit.exitCode, 0, text(popInit.stderr))
  t.match(JSON.parse(text(popInit.stdout)), {
    role: 'pop',
    key_id: null,
    trusted_key_ids: [key_id],
  })
  const put = await clavitor(
    ['store', 'put', '--data', pop, '--p0', P0A, '--protection', 'off'],
    'x',
  )
  t.equal(put.exitCode, 1)
  t.match(text(put.stderr), /CLA_ERR_STORE_NO_SIGNING_KEY/)
})
