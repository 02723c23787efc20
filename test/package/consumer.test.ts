// The package as a user gets it: `npm pack`, installed into an empty project with npm, then
// used the way the issue "A library people can install" lists: a plain .mjs importing every
// public entry point and using a store, a .ts consumer type-checked against the shipped
// .d.ts, the installed `clavitor --help`, an internal path refused, and a tarball with no
// tests, benchmarks, fixtures or test output in it.
//
// dist/ is the one `npm test` built (pretest); the pack skips its own scripts, whose clean
// rebuild would pull dist/ away from the tests running beside this one. The dependencies
// come from the npm registry (or npm's cache); better-sqlite3's native addon is the one
// this checkout compiled (same version, same Node), copied instead of compiled again
// (~75 s), when the versions agree.
import t from 'tap'
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { execa } from 'execa'
import { childEnv } from '../fixtures/child-env.js'
import { clearFlags } from '../fixtures/credentials.js'

const REPO = new URL('../..', import.meta.url).pathname

/** npm, node and the installed CLI, none of it measured here: without tap's hook (child-env.ts). */
const sh = (file: string, args: string[], opts: { cwd?: string; reject?: boolean } = {}) =>
  execa(file, args, { env: childEnv(), ...opts })
const dir = mkdtempSync(join(tmpdir(), 'clavitor-consumer-'))
t.teardown(() => {
  clearFlags(dir)
  rmSync(dir, { recursive: true, force: true })
})
const project = join(dir, 'project')

const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as {
  name: string
  version: string
  exports: Record<string, unknown>
}

let files: string[] = []
t.before(async () => {
  const pack = await sh('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {
    cwd: REPO,
  })
  const info = (
    JSON.parse(pack.stdout) as Array<{ filename: string; files: { path: string }[] }>
  )[0]!
  files = info.files.map((f) => f.path)
  cpSync(join(REPO, 'test/fixtures/consumer'), project, { recursive: true })
  await sh(
    'npm',
    [
      'install',
      '--ignore-scripts',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--loglevel=error',
      join(dir, info.filename),
      '@types/node@20',
    ],
    { cwd: project },
  )
  // The native addon: the one this checkout built when the versions agree, else npm's build.
  const ours = join(REPO, 'node_modules/better-sqlite3')
  const theirs = join(project, 'node_modules/better-sqlite3')
  const version = (d: string) =>
    (JSON.parse(readFileSync(join(d, 'package.json'), 'utf8')) as { version: string }).version
  if (existsSync(join(ours, 'build/Release')) && version(ours) === version(theirs))
    cpSync(join(ours, 'build'), join(theirs, 'build'), { recursive: true })
  else await sh('npm', ['rebuild', 'better-sqlite3'], { cwd: project })
})

t.test(
  'the tarball holds the build, the units and the docs, nothing of the workshop',
  async (t) => {
    t.ok(files.includes('dist/exports/index.js'), 'the root entry')
    t.ok(files.includes('dist/exports/index.d.ts'), 'its types')
    t.ok(files.includes('dist/scripts/cli/main.js'), 'the bin')
    t.ok(files.includes('dist/lib/db/schema.sql'), 'what the code reads beside itself')
    t.ok(files.includes('scripts/systemd/clavitor-core.service'))
    t.ok(files.includes('README.md') && files.includes('docs/embedding.md'))
    const workshop = files.filter(
      (f) =>
        /^(test|examples|coverage|test-output|\.tap|\.ci)\//.test(f) ||
        /^scripts\/(bench|build\.mjs|clavitor)/.test(f) ||
        /(^|\/)fixtures\//.test(f) ||
        /\.test\.[jt]s$/.test(f) ||
        (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)) ||
        /^dist\/\.(tsbuildinfo|built|build\.lock)$/.test(f),
    )
    t.same(workshop, [], 'no tests, benchmarks, fixtures, test output, sources or build stamps')
  },
)

t.test('a plain .mjs imports every public entry point, puts and verifies a blob', async (t) => {
  const r = await sh('node', ['use.mjs', join(dir, 'data')], {
    cwd: project,
    reject: false,
  })
  t.equal(r.exitCode, 0, r.stderr)
  const out = JSON.parse(r.stdout) as Record<string, unknown>
  t.same(
    out.entries,
    Object.keys(pkg.exports).filter((k) => k !== './package.json'),
  )
  t.equal(out.payload, 'hello from a consumer')
  t.equal(out.verified, true)
  t.equal(out.formatCheck, 'CLA_ERR_BAD_HASH', 'the format module alone refuses a tampered file')
})

t.test('a TypeScript consumer type-checks against the shipped .d.ts', async (t) => {
  // The repo's own compiler over the consumer's project: only the .d.ts of the package
  // (node_modules/clavitor-core) can satisfy its imports. consumer.ts holds expect-error
  // directives that only a typed API can honour, and IsAny checks on key types.
  const tsc = join(REPO, 'node_modules/typescript/bin/tsc')
  const r = await sh('node', [tsc, '-p', 'tsconfig.json'], { cwd: project, reject: false })
  t.equal(r.exitCode, 0, r.stdout + r.stderr)
})

t.test('the installed clavitor --help works with plain node', async (t) => {
  const r = await sh(join(project, 'node_modules/.bin/clavitor'), ['--help'], { reject: false })
  t.equal(r.exitCode, 0, r.stderr)
  t.match(r.stdout, /Usage: clavitor/)
  t.match(r.stdout, /store +the WORM \.cla blob store/)
  const sub = await sh(join(project, 'node_modules/.bin/clavitor'), ['store', '--help'], {
    reject: false,
  })
  t.equal(sub.exitCode, 0, sub.stderr)
  t.match(sub.stdout, /verify/)
})

t.test('internal paths are not reachable', async (t) => {
  for (const spec of [
    'clavitor-core/lib/store/store.js',
    'clavitor-core/dist/lib/core.js',
    'clavitor-core/dist/exports/index.js',
    'clavitor-core/scripts/cli/main.js',
  ]) {
    const r = await sh(
      'node',
      ['--input-type=module', '-e', `await import(${JSON.stringify(spec)})`],
      {
        cwd: project,
        reject: false,
      },
    )
    t.not(r.exitCode, 0, spec)
    t.match(r.stderr, /ERR_PACKAGE_PATH_NOT_EXPORTED/, `${spec} is refused by the exports map`)
  }
})
