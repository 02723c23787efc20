// The CommonJS face of index.mjs.
exports.importLoader = '@clavitor/_tap-ts/import'
exports.preload = true
exports.testFileExtensions = ['ts']
