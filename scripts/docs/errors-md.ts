// Renders docs/errors.md from lib/errors.ts. Run: scripts/clavitor-ts scripts/docs/errors-md.ts --write
// test/lib/errors.test.ts fails when the committed file differs from this rendering.
import { writeFileSync } from 'node:fs'
import { ERRORS } from '../../lib/errors.js'

export function renderErrorsMd(): string {
  const rows = Object.entries(ERRORS).map(
    ([code, spec]) => `| \`${code}\` | ${spec.status} | ${spec.exit} | ${spec.description} |`,
  )
  return [
    '# Error codes',
    '',
    'Every error the library raises on purpose carries a stable code. HTTP APIs answer',
    '`{"error": {"code", "message", "details"?}}` with the status below; the CLI prints',
    '`clavitor: CODE: message` on stderr and exits with the exit code below (2: the command',
    'was wrong, fix it; 1: something failed). Codes never change meaning; new ones are added.',
    '',
    'This file is generated from `lib/errors.ts` by `scripts/clavitor-ts scripts/docs/errors-md.ts --write`;',
    'a test fails when the two drift.',
    '',
    '| code | HTTP | exit | meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n')
}

if (process.argv.includes('--write')) {
  writeFileSync(new URL('../../docs/errors.md', import.meta.url), renderErrorsMd())
}
