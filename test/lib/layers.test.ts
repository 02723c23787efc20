// Guards the import rules of docs/architecture.md: lib/ never imports the apps or scripts,
// and each layer imports only the layers its row in the table names.
import t from 'tap'
import fg from 'fast-glob'
import { readFileSync } from 'node:fs'

const ALLOWED: Record<string, string[]> = {
  db: ['clock', 'errors'],
  store: ['clock', 'db', 'errors'],
  audit: ['clock', 'db', 'errors', 'store'],
  billing: ['audit', 'clock', 'db', 'errors'],
  auth: ['audit', 'clock', 'db', 'errors'],
  'core-sync': ['audit', 'auth', 'clock', 'db', 'errors', 'store'],
  'pop-sync': ['audit', 'clock', 'core-sync', 'db', 'errors', 'log', 'store'],
  credentials: ['audit', 'billing', 'clock', 'db', 'errors', 'store'],
  admin: ['audit', 'auth', 'billing', 'clock', 'core-sync', 'credentials', 'db', 'errors', 'store'],
}

const root = new URL('../../', import.meta.url)
const importRe = /(?:^|\n)\s*(?:import|export)[^'"]*?from\s+'([^']+)'|import\(\s*'([^']+)'\s*\)/g

function importsOf(file: string): string[] {
  const src = readFileSync(new URL(file, root), 'utf8')
  return [...src.matchAll(importRe)].map((m) => (m[1] ?? m[2])!).filter((s) => s.startsWith('.'))
}

t.test('lib/ never imports server/, pop-agent/ or scripts/', async (t) => {
  const files = await fg('lib/**/*.ts', { cwd: root.pathname })
  t.ok(files.length > 20, 'found the library sources')
  for (const f of files) {
    for (const spec of importsOf(f)) {
      t.notMatch(spec, /(^|\/)(server|pop-agent|scripts)\//, `${f} imports ${spec}`)
    }
  }
})

// The two apps share their plumbing through http/, never through each other's folder.
t.test('the apps: http/ is shared, server/ and pop-agent/ never import each other', async (t) => {
  const rules: Array<[string, RegExp]> = [
    ['http/**/*.ts', /(^|\/)(server|pop-agent|scripts)\//],
    ['server/**/*.ts', /(^|\/)(pop-agent|scripts)\//],
    ['pop-agent/**/*.ts', /(^|\/)(server|scripts)\//],
  ]
  for (const [glob, forbidden] of rules) {
    const files = await fg(glob, { cwd: root.pathname })
    t.ok(files.length > 0, `found ${glob}`)
    for (const f of files) {
      for (const spec of importsOf(f)) t.notMatch(spec, forbidden, `${f} imports ${spec}`)
    }
  }
})

// The public surface (exports/, package.json "exports") is for users of the package: the
// code inside it imports the files directly, so an entry point can change freely and a
// user never depends on something only reachable by accident.
t.test(
  'exports/ re-exports lib/, server/ and pop-agent/ only, and nothing imports it',
  async (t) => {
    const entries = await fg('exports/*.ts', { cwd: root.pathname })
    t.ok(entries.length >= 8, 'found the entry points')
    for (const f of entries)
      for (const spec of importsOf(f))
        t.match(spec, /^\.\.\/(lib|server|pop-agent|http)\//, `${f} imports ${spec}`)
    const inside = await fg(
      ['lib/**/*.ts', 'http/**/*.ts', 'server/**/*.ts', 'pop-agent/**/*.ts', 'scripts/**/*.ts'],
      {
        cwd: root.pathname,
      },
    )
    for (const f of inside)
      for (const spec of importsOf(f)) t.notMatch(spec, /(^|\/)exports\//, `${f} imports ${spec}`)
  },
)

t.test('each lib/ layer imports only what docs/architecture.md allows', async (t) => {
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    const files = await fg(`lib/${layer}/**/*.ts`, { cwd: root.pathname })
    t.ok(files.length > 0, `${layer} exists`)
    for (const f of files) {
      for (const spec of importsOf(f)) {
        const m = /^\.\.\/([a-z-]+)(?:\/|\.js$)/.exec(spec)
        if (!m) continue // same layer
        t.ok(allowed.includes(m[1]!), `${f} → ${m[1]} is allowed`, { allowed })
      }
    }
  }
})

t.test('the table in docs/architecture.md says the same', async (t) => {
  const doc = readFileSync(new URL('docs/architecture.md', root), 'utf8')
  for (const [layer, allowed] of Object.entries(ALLOWED)) {
    const row = doc.split('\n').find((l) => l.includes(`\`lib/${layer}/\``))
    t.ok(row, `row for ${layer}`)
    const cell = row!.split('|').at(-2)!.trim()
    t.same(
      cell
        .split(',')
        .map((s) => s.trim().split(' ')[0])
        .sort(),
      [...allowed].sort(),
      `${layer} row`,
    )
  }
})

// Audit rows are decisions: they are built in lib/ (the apps and the CLI call the library).
t.test('no audit row is built outside lib/', async (t) => {
  const files = await fg(
    ['server/**/*.ts', 'pop-agent/**/*.ts', 'http/**/*.ts', 'scripts/**/*.ts'],
    {
      cwd: root.pathname,
    },
  )
  t.ok(files.length > 20, 'found the apps and scripts')
  for (const f of files) {
    const src = readFileSync(new URL(f, root), 'utf8')
    t.notMatch(src, /\bappendEvent\s*\(/, `${f} calls appendEvent`)
  }
})

// An import circle among lib/ files (type-only imports included: they still tie the two
// designs together) means neither side can be read, tested or moved alone. The walk
// resolves relative imports to files and follows them depth-first; a file met again while
// still on the path closes a circle, reported with the whole path.
t.test('no import cycles among lib/ files', async (t) => {
  const files = new Set(await fg('lib/**/*.ts', { cwd: root.pathname }))
  const edges = new Map<string, string[]>()
  for (const f of files) {
    const deps: string[] = []
    for (const spec of importsOf(f)) {
      const target = new URL(spec.replace(/\.js$/, '.ts'), new URL(f, root)).pathname.slice(
        root.pathname.length,
      )
      if (files.has(target)) deps.push(target)
    }
    edges.set(f, deps)
  }
  t.ok(edges.size > 20, 'found the library sources')
  const cycles: string[] = []
  const done = new Set<string>()
  const path: string[] = []
  const onPath = new Set<string>()
  const visit = (f: string): void => {
    if (onPath.has(f)) {
      cycles.push([...path.slice(path.indexOf(f)), f].join(' → '))
      return
    }
    if (done.has(f)) return
    onPath.add(f)
    path.push(f)
    for (const d of edges.get(f) ?? []) visit(d)
    path.pop()
    onPath.delete(f)
    done.add(f)
  }
  for (const f of [...files].sort()) visit(f)
  t.same(cycles, [], 'no file imports itself through others')
})

// The store owns its index and its files: no SQL on `blobs` and no sealing outside
// lib/store/ (reads go through lib/store/blob-index.ts, re-seals and quarantine through
// BlobStore). Benchmarks and tests may clear flags on their own temp trees.
t.test('only lib/store/ touches blobs and seals files', async (t) => {
  const files = await fg(
    [
      'lib/**/*.ts',
      'server/**/*.ts',
      'pop-agent/**/*.ts',
      'http/**/*.ts',
      'scripts/cli/**/*.ts',
      'scripts/demo/**/*.ts',
    ],
    { cwd: root.pathname, ignore: ['lib/store/**'] },
  )
  t.ok(files.length > 50, 'found the sources')
  for (const f of files) {
    const src = readFileSync(new URL(f, root), 'utf8')
    t.notMatch(src, /\b(FROM|JOIN|INTO|UPDATE)\s+blobs\b/i, `${f} queries blobs`)
    t.notMatch(
      src,
      /\b(execa|execFile|execFileSync|spawn|spawnSync)\(\s*['"]chattr['"]|import\s*\{[^}]*\b(chattr|sealFiles|sealDirs|unsealTree)\b[^}]*\}\s*from\s*'[^']*store\/seal\.js'/,
      `${f} seals files itself`,
    )
  }
})

// One clock (lib/clock.ts): no module keeps a clock type of its own or takes a bare
// `now` function; time comes through `clock?: Clock`.
t.test('one clock: no other Clock type, no `now?: () => number` option', async (t) => {
  const files = await fg(['lib/**/*.ts', 'server/**/*.ts', 'pop-agent/**/*.ts', 'http/**/*.ts'], {
    cwd: root.pathname,
  })
  for (const f of files) {
    if (f === 'lib/clock.ts') continue
    const src = readFileSync(new URL(f, root), 'utf8')
    t.notMatch(src, /^\s*(now|clock)\?: \(\) => number/m, `${f} takes a bare clock function`)
    t.notMatch(src, /^export interface Clock\b/m, `${f} declares a Clock of its own`)
  }
})
