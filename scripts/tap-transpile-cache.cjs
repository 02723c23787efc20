// The test runner's TypeScript transpiler (tsconfig.tap.json names it; tap's TypeScript
// plugin runs ts-node in transpile-only mode with it): ts-node's own transpile, the same
// output and source maps (coverage maps exactly as before), kept on disk by the sha256 of
// its input. Each of the suite's ~140 test processes used to transpile the same few
// hundred sources anew, ~3 s of CPU each for a test that imports the core; with the cache
// only the first process to meet a source pays, and TypeScript's transpiler is not even set
// up in a process whose sources are all cached. An entry is written once, atomically (a
// temporary file renamed), so parallel test processes share it safely; anything that
// changes the output (the source, its file name, the compiler options, the module kind,
// TypeScript's version, this file) changes the key. Output with diagnostics is not kept.
'use strict'
const { createHash } = require('node:crypto')
const { mkdirSync, readFileSync, renameSync, writeFileSync } = require('node:fs')
const { dirname, join } = require('node:path')

const root = dirname(__dirname)
const cacheDir = join(root, 'node_modules', '.cache', 'clavitor-tap-transpile')
const tsVersion = JSON.parse(
  readFileSync(require.resolve('typescript/package.json'), 'utf8'),
).version
const self = createHash('sha256').update(readFileSync(__filename)).digest('hex')

/** @type {import('@isaacs/ts-node-temp-fork-for-pr-2009').TranspilerModule['create']} */
exports.create = function create(opts) {
  const compilerOptions = opts.service.config.options
  const kind = opts.nodeModuleEmitKind === 'nodeesm' ? 'module' : 'commonjs'
  const salt = JSON.stringify([self, tsVersion, kind, compilerOptions])
  let transpile = null // set up on the first cache miss only
  const fresh = (code, fileName) => {
    if (!transpile) {
      const ts = require('typescript')
      const tsNode = dirname(require.resolve('@isaacs/ts-node-temp-fork-for-pr-2009'))
      const { createTsTranspileModule } = require(join(tsNode, 'ts-transpile-module.js'))
      const t = createTsTranspileModule(ts, { compilerOptions, reportDiagnostics: true })
      transpile = (c, f) => t(c, { fileName: f }, kind)
    }
    return transpile(code, fileName)
  }
  return {
    transpile(code, { fileName }) {
      const key = createHash('sha256')
        .update(salt)
        .update('\0')
        .update(fileName)
        .update('\0')
        .update(code)
        .digest('hex')
      const file = join(cacheDir, key.slice(0, 2), `${key}.json`)
      try {
        return JSON.parse(readFileSync(file, 'utf8'))
      } catch {
        // not cached yet (or a torn read, which the rename below rules out)
      }
      const r = fresh(code, fileName)
      if (!r.diagnostics || r.diagnostics.length === 0) {
        const out = { outputText: r.outputText, sourceMapText: r.sourceMapText }
        try {
          mkdirSync(dirname(file), { recursive: true })
          const tmp = `${file}.${process.pid}.tmp`
          writeFileSync(tmp, JSON.stringify(out))
          renameSync(tmp, file)
        } catch {
          // a read-only checkout: transpile each time, as before
        }
      }
      return r
    },
  }
}
