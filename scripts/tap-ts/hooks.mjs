// The test processes' module loader for TypeScript (registered by import.mjs; tap gives
// each test process that `--import` through this folder's plugin, package.json
// "tap.plugin"). It replaces tap's default, ts-node, which set TypeScript up in every test
// process's loader thread even when its output was cached, and ran its hooks on every
// import: the suite took 1,805 s of CPU with it and 1,295 s with this (docs/performance.md). Here a source is transpiled by TypeScript's own transpileModule
// once and kept on disk by the sha256 of its input, with the source map inlined as ts-node
// did (coverage maps to the .ts lines as before); TypeScript is loaded only by a process
// that meets a source not yet cached. Types are checked by `tsc --noEmit` (CI), as before:
// neither loader checks them.
//
// tsx would load faster still, but tap's coverage of its output comes out as a bogus 100 %
// for every file (privatenumber/tsx#433, #558), so the test processes keep TypeScript's emit.
//
// Resolution: `./x.js` names ./x.ts when that exists (TypeScript's NodeNext convention);
// everything else is Node's. Only files outside node_modules are transpiled; all are ES
// modules (package.json "type": "module"; there is no .cts here).
import { createHash, randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { threadId } from 'node:worker_threads'

const here = dirname(fileURLToPath(import.meta.url))
const root = dirname(dirname(here))
const tsconfigPath = join(root, 'tsconfig.json')
const cacheDir = join(root, 'node_modules', '.cache', 'clavitor-tap-ts')
const require = createRequire(join(root, 'package.json'))

// Anything that changes the output changes the key: this file, the compiler options (the
// whole tsconfig.json; it extends nothing), TypeScript's version; then the file's name and
// its source.
const salt = createHash('sha256')
  .update(readFileSync(fileURLToPath(import.meta.url)))
  .update('\0')
  .update(readFileSync(tsconfigPath))
  .update('\0')
  .update(JSON.parse(readFileSync(require.resolve('typescript/package.json'), 'utf8')).version)
  .digest('hex')

const isOurs = (url) => url.startsWith('file:') && !url.includes('/node_modules/')
/** The .ts file a module URL names (a mock's query string aside), or null. */
const tsPath = (url) => {
  const u = new URL(url)
  if (!u.pathname.endsWith('.ts') || u.pathname.endsWith('.d.ts')) return null
  u.search = ''
  u.hash = ''
  return fileURLToPath(u)
}

export async function resolve(specifier, context, next) {
  const parent = context.parentURL
  if (
    parent &&
    isOurs(parent) &&
    specifier.endsWith('.js') &&
    (specifier.startsWith('./') || specifier.startsWith('../'))
  ) {
    const candidate = new URL(specifier.slice(0, -3) + '.ts', parent)
    if (existsSync(fileURLToPath(candidate)))
      return { url: candidate.href, format: 'module', shortCircuit: true }
  }
  return next(specifier, context)
}

export async function load(url, context, next) {
  const file = isOurs(url) ? tsPath(url) : null
  if (file === null) return next(url, context)
  return { format: 'module', source: transpiled(file), shortCircuit: true }
}

/** The ES module for one .ts file, from the cache or transpiled now (and cached). */
function transpiled(file) {
  const code = readFileSync(file, 'utf8')
  const key = createHash('sha256')
    .update(salt)
    .update('\0')
    .update(file)
    .update('\0')
    .update(code)
    .digest('hex')
  const cached = join(cacheDir, key.slice(0, 2), `${key}.js`)
  try {
    return readFileSync(cached, 'utf8')
  } catch {
    // not cached yet
  }
  const out = transpile(code, file)
  try {
    mkdirSync(dirname(cached), { recursive: true })
    // written whole under another name, then renamed: parallel test processes share it
    const tmp = `${cached}.${process.pid}.${threadId}.${randomBytes(4).toString('hex')}.tmp`
    try {
      writeFileSync(tmp, out)
      renameSync(tmp, cached)
    } catch (err) {
      rmSync(tmp, { force: true })
      throw err
    }
  } catch {
    // a read-only checkout: transpile each time
  }
  return out
}

let ts = null
let compilerOptions = null

/** transpileModule as ts-node ran it (transpile-only), its source map inlined as ts-node did. */
function transpile(code, file) {
  if (!ts) {
    ts = require('typescript')
    const read = ts.readConfigFile(tsconfigPath, ts.sys.readFile)
    if (read.error) throw new Error(ts.flattenDiagnosticMessageText(read.error.messageText, '\n'))
    const parsed = ts.parseJsonConfigFileContent(read.config, ts.sys, root)
    compilerOptions = {
      ...parsed.options,
      // every source here is an ES module: what NodeNext emits for one
      module: ts.ModuleKind.ESNext,
      moduleResolution: ts.ModuleResolutionKind.Bundler,
      // ts-node's own overrides
      sourceMap: true,
      inlineSourceMap: false,
      inlineSources: true,
      declaration: false,
      declarationMap: false,
      noEmit: false,
      emitDeclarationOnly: false,
      composite: false,
      incremental: false,
      tsBuildInfoFile: undefined,
      outDir: '$$ts-node$$',
    }
  }
  const r = ts.transpileModule(code, { compilerOptions, fileName: file, reportDiagnostics: true })
  const errors = (r.diagnostics ?? []).filter(
    (d) => d.category === ts.DiagnosticCategory.Error && d.file,
  )
  if (errors.length > 0) {
    const d = errors[0]
    const { line, character } = d.file.getLineAndCharacterOfPosition(d.start ?? 0)
    throw new SyntaxError(
      `${file}:${line + 1}:${character + 1}: ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`,
    )
  }
  const map = JSON.parse(r.sourceMapText)
  map.file = file
  map.sources = [file]
  delete map.sourceRoot
  const inline = `//# sourceMappingURL=data:application/json;charset=utf-8;base64,${Buffer.from(JSON.stringify(map), 'utf8').toString('base64')}`
  const text = r.outputText.replace(/\/\/# sourceMappingURL=\S*\s*$/, '')
  return text + inline
}
