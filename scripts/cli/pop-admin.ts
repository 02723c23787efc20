// `clavitor core pop add|list|remove|rotate-cert|allow|rotate-token-secret`: the POP
// registry on the core (lib/auth/pops.ts). Registers under the `core` command, which
// another module may have created already (keep this module after it in main.ts).
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import { Option, type Command } from 'commander'
import { openCore } from '../../lib/core.js'
import { claError } from '../../lib/errors.js'
import { listPops } from '../../lib/auth/pops.js'
import {
  enrolPop,
  rebindPopCert,
  renewRsyncSecret,
  renewTokenSecret,
  replacePopAllowlist,
  retirePop,
} from '../../lib/core-sync/pop-registry.js'
import {
  action,
  dataOption,
  jsonOption,
  onShutdown,
  parseListen,
  printJson,
  withCore,
} from './common.js'
import { createLogger } from '../../lib/log.js'
import { buildPopApiApp, popApiTlsFromCa } from '../../server/pop-api.js'
import { subcommand } from './common.js'

const collect = (v: string, prev: string[] = []) => [
  ...prev,
  ...v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
]

/** The audit actor of these commands (run on the core host). */
const CLI = { actor: 'cli' }

function readCert(file: string): string {
  try {
    return readFileSync(file, 'utf8')
  } catch (cause) {
    throw claError('CLA_ERR_INVALID_OPTION', `cannot read ${file}: ${(cause as Error).message}`, {
      cause,
    })
  }
}

/** Refuses an --rsync-password-out that exists (before anything is changed). */
function checkPasswordOut(file: string | undefined): void {
  if (file && existsSync(file))
    throw claError('CLA_ERR_INVALID_OPTION', `${file} exists; give a new file for the password`)
}

/** Hands the rsync password over once: to a new 0600 file, or a line on stdout. */
function handOverPassword(s: { user: string; password: string }, file: string | undefined): string {
  if (file) {
    writeFileSync(file, s.password + '\n', { mode: 0o600, flag: 'wx' })
    return `rsync user ${s.user}: password written to ${file} (install it on the POP as {data}/pop-auth/rsync.password, mode 0600)\n`
  }
  return (
    `rsync user ${s.user} password ${s.password}\n` +
    '  (shown once: put it in {data}/pop-auth/rsync.password on the POP, mode 0600; `core pop rsync-secret` issues a new one)\n'
  )
}

const passwordOutOption = () =>
  new Option(
    '--rsync-password-out <file>',
    "write the POP's new rsync password to this new file (mode 0600) instead of printing it",
  )

export function register(program: Command): void {
  const core = subcommand(program, 'core', 'core administration')
  const pop = core
    .command('pop')
    .description('the POPs this core trusts (id, certificate fingerprint, public key, allowlist)')

  pop
    .command('add')
    .description('register a POP from its certificate (issued by `clavitor ca issue-pop`)')
    .addOption(dataOption())
    .requiredOption('--id <pop>', 'POP id, [a-z0-9-]{1,63}; must match the certificate SAN')
    .requiredOption('--cert <file>', "the POP's certificate (PEM)")
    .requiredOption(
      '--allow <cidr>',
      'allowed source address or CIDR (repeatable or comma-separated)',
      collect,
    )
    .option('--name <name>', 'a display name')
    .addOption(passwordOutOption())
    .addOption(jsonOption())
    .action(
      action(
        async (o: {
          data: string
          id: string
          cert: string
          allow: string[]
          name?: string
          rsyncPasswordOut?: string
          json?: boolean
        }) => {
          checkPasswordOut(o.rsyncPasswordOut)
          const { pop: rec, rsync: secret } = await withCore(o.data, (c) =>
            enrolPop(
              c.db,
              o.data,
              { id: o.id, certPem: readCert(o.cert), allowlist: o.allow, name: o.name },
              CLI,
            ),
          )
          // the POP's rsync daemon password, handed over once
          const handed = handOverPassword(secret, o.rsyncPasswordOut)
          if (o.json)
            return printJson({
              ...rec,
              rsyncUser: secret.user,
              ...(o.rsyncPasswordOut
                ? { rsyncPasswordFile: o.rsyncPasswordOut }
                : { rsyncPassword: secret.password }),
            })
          process.stdout.write(
            `registered POP ${rec.id}: fingerprint ${rec.certFingerprint}, allow ${rec.allowlist.join(', ')}\n` +
              handed,
          )
        },
      ),
    )

  pop
    .command('list')
    .description('registered POPs')
    .addOption(dataOption())
    .option('--all', 'include removed POPs')
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; all?: boolean; json?: boolean }) => {
        const rows = await withCore(o.data, (c) => listPops(c.db, { includeRemoved: o.all }))
        if (o.json) return printJson(rows)
        for (const r of rows) {
          process.stdout.write(
            `${r.id.padEnd(20)} ${r.removedAt ? 'removed' : 'live   '} ${r.certFingerprint.slice(0, 16)}… allow ${r.allowlist.join(',')}` +
              (r.name ? ` (${r.name})` : '') +
              '\n',
          )
        }
      }),
    )

  pop
    .command('remove')
    .description(
      'stop trusting a POP (its refresh tokens are revoked; also run `clavitor ca revoke --id`)',
    )
    .addOption(dataOption())
    .requiredOption('--id <pop>', 'POP id')
    .action(
      action(async (o: { data: string; id: string }) => {
        await withCore(o.data, (c) => retirePop(c.db, o.data, o.id, CLI))
        process.stdout.write(
          `removed POP ${o.id} (regenerate the rsyncd config: \`clavitor core rsyncd-config\`)\n`,
        )
      }),
    )

  pop
    .command('rsync-secret')
    .description(
      'a new rsync daemon password for a POP (the old one stops working); shown once, kept only in {data}/keys/rsyncd.secrets',
    )
    .addOption(dataOption())
    .requiredOption('--id <pop>', 'POP id')
    .addOption(passwordOutOption())
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; id: string; rsyncPasswordOut?: string; json?: boolean }) => {
        checkPasswordOut(o.rsyncPasswordOut)
        const s = await withCore(o.data, (c) => renewRsyncSecret(c.db, o.data, o.id, CLI))
        const handed = handOverPassword(s, o.rsyncPasswordOut)
        if (o.json)
          return printJson({
            id: o.id,
            rsyncUser: s.user,
            ...(o.rsyncPasswordOut
              ? { rsyncPasswordFile: o.rsyncPasswordOut }
              : { rsyncPassword: s.password }),
          })
        process.stdout.write(handed)
      }),
    )

  pop
    .command('rotate-cert')
    .description(
      'bind a POP to its new certificate (after a new `pop init` key and `ca issue-pop`)',
    )
    .addOption(dataOption())
    .requiredOption('--id <pop>', 'POP id')
    .requiredOption('--cert <file>', 'the new certificate (PEM)')
    .action(
      action(async (o: { data: string; id: string; cert: string }) => {
        const r = await withCore(o.data, (c) => rebindPopCert(c.db, o.id, readCert(o.cert), CLI))
        process.stdout.write(`POP ${r.id} now bound to ${r.certFingerprint}\n`)
      }),
    )

  pop
    .command('allow')
    .description("replace a POP's address allowlist")
    .addOption(dataOption())
    .requiredOption('--id <pop>', 'POP id')
    .requiredOption(
      '--allow <cidr>',
      'allowed address or CIDR (repeatable or comma-separated)',
      collect,
    )
    .action(
      action(async (o: { data: string; id: string; allow: string[] }) => {
        const r = await withCore(o.data, (c) => replacePopAllowlist(c.db, o.id, o.allow, CLI))
        process.stdout.write(`POP ${r.id} allow ${r.allowlist.join(', ')}\n`)
      }),
    )

  pop
    .command('rotate-token-secret')
    .description(
      'new HMAC secret for POP access tokens ({data}/keys/pop-token.key); the previous one stays valid for tokens already issued',
    )
    .addOption(dataOption())
    .action(
      action(async (o: { data: string }) => {
        await withCore(o.data, (c) => renewTokenSecret(c.db, o.data, CLI))
        process.stdout.write(
          'token secret rotated; the POP API picks it up on its next token check\n',
        )
      }),
    )

  core
    .command('pop-api')
    .description(
      'serve the POP API (mTLS, signed requests, tokens; the sync feed) with the TLS files of {data}/ca/',
    )
    .addOption(dataOption())
    .addOption(
      new Option('--listen <host:port>', 'address to listen on')
        .env('CLAVITOR_POP_LISTEN')
        .default('0.0.0.0:8443'),
    )
    .addOption(
      new Option('--rate-limit <n>', 'requests per POP per minute')
        .env('CLAVITOR_POP_RATE_LIMIT')
        .default('600'),
    )
    .action(
      action(async (o: { data: string; listen: string; rateLimit: string }) => {
        const { host, port } = parseListen(o.listen)
        const max = Number(o.rateLimit)
        if (!Number.isSafeInteger(max) || max < 1)
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `--rate-limit must be a positive integer, got ${o.rateLimit}`,
          )
        const log = createLogger({ base: { role: 'pop-api' } })
        const c = await openCore({ dataDir: o.data })
        const app = await buildPopApiApp({
          core: c,
          tls: popApiTlsFromCa(o.data),
          rateLimitMax: max,
          fastify: { loggerInstance: log },
        })
        try {
          await app.listen({ host, port })
        } catch (err) {
          await app.close()
          await c.close()
          throw err
        }
        log.info({ listen: o.listen, data: o.data }, 'POP API listening')
        onShutdown(
          async (signal) => {
            log.info({ signal }, 'shutting down')
            await app.close()
            await c.close()
          },
          (err) => log.error({ err }, 'shutdown failed'),
        )
      }),
    )
}
