// The suite's tap plugin, in place of tap's default @tapjs/typescript (package.json
// "tap.plugin"): each test process gets hooks.mjs as its module loader. See hooks.mjs for
// why. tap loads a plugin with import() and require(), hence index.cjs; index.d.ts types
// both for the test class tap compiles from its plugin list. The name starts with "_"
// after the scope so that tap takes it as a local folder, not a package to fetch from the
// registry.
export const importLoader = '@clavitor/_tap-ts/import'
export const preload = true
export const testFileExtensions = ['ts']
