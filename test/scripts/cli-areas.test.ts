// scripts/cli/areas.ts names, for each top-level command, its description and the modules
// that add to it, so a run imports only its own area. This checks the table against what
// the modules really register: a new command, a moved one or a changed description fails
// here instead of vanishing from `clavitor --help` or from its own area's run.
import t from 'tap'
import { Command } from 'commander'
import { AREAS, buildProgram } from '../../scripts/cli/areas.js'

const everything = async (): Promise<Command> => {
  // Every module once, in the order areas.ts lists them (first appearance).
  const program = new Command()
  const seen = new Set<unknown>()
  for (const area of Object.values(AREAS))
    for (const load of area.modules) {
      if (seen.has(load)) continue
      seen.add(load)
      ;(await load()).register(program)
    }
  return program
}

t.test('every top-level command is an area, with the description its module gives', async (t) => {
  const all = await everything()
  const real = Object.fromEntries(all.commands.map((c) => [c.name(), c.description()]))
  t.same(Object.fromEntries(Object.entries(AREAS).map(([n, a]) => [n, a.description])), real)
})

t.test("an area's modules register every subcommand the full program has", async (t) => {
  const all = await everything()
  for (const name of Object.keys(AREAS)) {
    const program = await buildProgram(['node', 'clavitor', name])
    const mine = program.commands.find((c) => c.name() === name)
    const full = all.commands.find((c) => c.name() === name)!
    t.ok(mine, `${name} is registered when named`)
    t.same(
      mine?.commands.map((c) => c.name()).sort(),
      full.commands.map((c) => c.name()).sort(),
      `${name}: the same subcommands`,
    )
  }
})

t.test('an overview or an unknown word lists the areas without loading them', async (t) => {
  for (const argv of [[], ['--help'], ['nope'], ['help']]) {
    const program = await buildProgram(['node', 'clavitor', ...argv])
    t.same(
      program.commands.map((c) => c.name()),
      Object.keys(AREAS),
      `clavitor ${argv.join(' ')}`,
    )
    t.ok(
      program.commands.every((c) => c.commands.length === 0),
      'stubs only',
    )
  }
  const help = await buildProgram(['node', 'clavitor', 'help', 'vault'])
  t.ok(help.commands.find((c) => c.name() === 'vault')!.commands.length > 0, 'help AREA loads it')
})
