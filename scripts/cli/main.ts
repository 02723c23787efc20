#!/usr/bin/env node
// Entry of the `clavitor` CLI: compiled to dist/scripts/cli/main.js and run with plain
// node (the package's bin). Each area registers its own subcommands from its own file;
// areas.ts says which, and only the area named on the command line is imported.
import { buildProgram } from './areas.js'

await (await buildProgram(process.argv)).parseAsync(process.argv)
