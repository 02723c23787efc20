// `clavitor admin …`: admin accounts of the web UI from the core host itself (lib/admin).
// Whoever runs these has the data folder, so they act as 'system' in the audit log.
import { InvalidArgumentError, Option, type Command } from 'commander'
import { isRole, ROLES, type Role } from '../../lib/admin/roles.js'
import type { Core } from '../../lib/core.js'
import { claError } from '../../lib/errors.js'
import { action, dataOption, openCore, printJson } from './common.js'

const originOption = () =>
  new Option('--origin <url>', 'public origin of the admin UI, used to print the link')
    .env('CLAVITOR_ADMIN_ORIGIN')
    .default('http://localhost:8080')

function parseOrigin(v: string): string {
  let u: URL
  try {
    u = new URL(v)
  } catch {
    throw new InvalidArgumentError('must be a URL like https://admin.example.com')
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:')
    throw new InvalidArgumentError('must be http(s)')
  return u.origin
}

function parseHours(v: string): number {
  const n = Number(v)
  if (!Number.isFinite(n) || n <= 0 || n > 24 * 30)
    throw new InvalidArgumentError('must be hours, more than 0 and at most 720')
  return n
}

function parseRoleArg(v: string): Role {
  if (!isRole(v)) throw new InvalidArgumentError(`must be one of ${ROLES.join(', ')}`)
  return v
}

const setupUrl = (origin: string, token: string) =>
  `${origin}/admin/setup?token=${encodeURIComponent(token)}`

export function register(program: Command): void {
  const admin = program
    .command('admin')
    .description('admins of the web UI (WebAuthn security keys)')

  admin
    .command('invite')
    .description('print a one-time link that enrolls a new admin with the given role')
    .addOption(dataOption())
    .addOption(
      new Option('--role <role>', `role: ${ROLES.join(' | ')}`)
        .argParser(parseRoleArg)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--ttl-hours <hours>', 'hours the link stays valid')
        .argParser(parseHours)
        .default(72),
    )
    .addOption(originOption().argParser(parseOrigin))
    .addOption(new Option('--json', 'print {url, role, expires_at} as JSON').env('CLAVITOR_JSON'))
    .action(
      action(
        async (o: {
          data: string
          role: Role
          ttlHours: number
          origin: string
          json?: boolean
        }) => {
          const core = await openCore({ dataDir: o.data })
          try {
            const t = core.admin.systemInvite(o.role, o.ttlHours * 3600_000)
            const url = setupUrl(o.origin, t.token)
            const expires = new Date(t.expiresAt / 1000).toISOString()
            if (o.json) printJson({ url, role: t.role, expires_at: expires })
            else process.stdout.write(`${url}\n(one use, ${t.role}, valid until ${expires})\n`)
          } finally {
            await core.close()
          }
        },
      ),
    )

  admin
    .command('setup-url')
    .description('print a new first-admin (owner) setup link; refused once an admin exists')
    .addOption(dataOption())
    .addOption(originOption().argParser(parseOrigin))
    .action(
      action(async (o: { data: string; origin: string }) => {
        const core = await openCore({ dataDir: o.data })
        try {
          const t = core.admin.firstAdminToken()
          if (!t) {
            throw claError(
              'CLA_ERR_INVALID_INPUT',
              'an admin exists already; use `clavitor admin invite --role owner`',
            )
          }
          process.stdout.write(`${setupUrl(o.origin, t.token)}\n`)
        } finally {
          await core.close()
        }
      }),
    )

  admin
    .command('list')
    .description('list admins with role, key count and state')
    .addOption(dataOption())
    .addOption(new Option('--json', 'print the rows as JSON').env('CLAVITOR_JSON'))
    .action(
      action(async (o: { data: string; json?: boolean }) => {
        const core = await openCore({ dataDir: o.data })
        try {
          const rows = core.admin.listAdmins()
          if (o.json) return printJson(rows)
          if (rows.length === 0)
            return void process.stdout.write('no admins yet (see `clavitor admin setup-url`)\n')
          for (const r of rows) {
            process.stdout.write(
              `${r.id}\t${r.name}\t${r.role ?? 'none'}\t${r.credentials} key(s)\t${r.disabled_at ? 'disabled' : 'active'}\n`,
            )
          }
        } finally {
          await core.close()
        }
      }),
    )

  admin
    .command('role')
    .description("change an admin's role by name (owner, operator, viewer; not the last owner)")
    .argument('<name>', 'the admin name as shown by `clavitor admin list`')
    .argument('<role>', 'owner, operator or viewer')
    .addOption(dataOption())
    .action(
      action(async (name: string, role: string, o: { data: string }) => {
        const core = await openCore({ dataDir: o.data })
        try {
          const row = adminNamed(core, name)
          const r = core.admin.setRole('system', row.id, role)
          process.stdout.write(`${name}: ${r.from ?? 'none'} -> ${r.to}\n`)
        } finally {
          await core.close()
        }
      }),
    )

  admin
    .command('disable')
    .description('disable an admin by name: sessions end, keys stop working (not the last owner)')
    .argument('<name>', 'the admin name as shown by `clavitor admin list`')
    .addOption(dataOption())
    .action(
      action(async (name: string, o: { data: string }) => {
        const core = await openCore({ dataDir: o.data })
        try {
          const row = adminNamed(core, name)
          core.admin.disable('system', row.id)
          process.stdout.write(`disabled ${name}\n`)
        } finally {
          await core.close()
        }
      }),
    )
}

/** The admin row for a name given on the command line; exit 2 with a hint when unknown. */
function adminNamed(core: Core, name: string) {
  const row = core.admin.findByName(name)
  if (!row)
    throw claError('CLA_ERR_INVALID_INPUT', `no admin named "${name}"; see \`clavitor admin list\``)
  return row
}
