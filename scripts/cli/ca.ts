// `clavitor ca init|issue-pop|issue-server|revoke|crl|list` (the private CA, lib/auth/ca.ts)
// and `clavitor pop init` (on the POP: its own Ed25519 key and a CSR).
import { readFileSync, writeFileSync } from 'node:fs'
import { Option, type Command } from 'commander'
import { claError } from '../../lib/errors.js'
import {
  caPaths,
  generateCrl,
  initCa,
  issuePopCert,
  issueServerCert,
  listCerts,
  popAuthPaths,
  popInit,
  revokeCert,
} from '../../lib/auth/ca.js'
import { action, dataOption, jsonOption, printJson, subcommand } from './common.js'

const collect = (v: string, prev: string[] = []) => [...prev, v]

export function register(program: Command): void {
  const ca = program
    .command('ca')
    .description('the private CA for POP mTLS certificates (wraps openssl)')

  ca.command('init')
    .description(
      'create the CA in {data}/ca/ (P-256 key 0600, certificate, CRL) and the core server certificate',
    )
    .addOption(dataOption())
    .option('--cn <name>', 'CA subject common name', 'Clavitor POP CA')
    .addOption(
      new Option(
        '--san <host>',
        'extra server certificate SAN (repeatable; besides localhost, 127.0.0.1)',
      )
        .env('CLAVITOR_CA_SAN')
        .argParser(collect),
    )
    .option('--days <n>', 'CA validity in days', '3650')
    .addOption(jsonOption())
    .action(
      action(
        async (o: {
          data: string
          cn: string
          san?: string[] | string
          days: string
          json?: boolean
        }) => {
          const r = await initCa(o.data, { cn: o.cn, serverSans: sans(o.san), days: days(o.days) })
          const p = caPaths(o.data)
          if (o.json) return printJson({ ...r, crl: p.crl, serverKey: p.serverKey })
          process.stdout.write(
            `CA created: ${r.caCert}\nserver certificate: ${r.serverCert} (key ${p.serverKey})\nCRL: ${p.crl}\n` +
              `Give ${r.caCert} to each POP (as {pop data}/pop-auth/ca.pem).\n`,
          )
        },
      ),
    )

  ca.command('issue-pop')
    .description("sign a POP's CSR (from `clavitor pop init`) into its client certificate")
    .addOption(dataOption())
    .requiredOption('--id <pop>', 'POP id, [a-z0-9-]{1,63}')
    .requiredOption('--csr <file>', "the POP's CSR file")
    .option('--out <file>', 'write the certificate here (default: stdout)')
    .option('--days <n>', 'validity in days', '365')
    .addOption(jsonOption())
    .action(
      action(
        async (o: {
          data: string
          id: string
          csr: string
          out?: string
          days: string
          json?: boolean
        }) => {
          const csrPem = readInput(o.csr)
          const c = await issuePopCert(o.data, { popId: o.id, csrPem, days: days(o.days) })
          if (o.out) writeFileSync(o.out, c.certPem)
          if (o.json)
            return printJson({ ...c, certPem: o.out ? undefined : c.certPem, file: o.out })
          if (!o.out) process.stdout.write(c.certPem)
          process.stderr.write(
            `issued ${o.id}: serial ${c.serial}, fingerprint ${c.fingerprint}\n` +
              `register it: clavitor core pop add --data DIR --id ${o.id} --cert ${o.out ?? 'CERT.pem'} --allow CIDR\n`,
          )
        },
      ),
    )

  ca.command('issue-server')
    .description(
      "re-issue the core's POP API server certificate (new key) in {data}/ca/server.{key,pem}",
    )
    .addOption(dataOption())
    .addOption(
      new Option('--san <host>', 'extra SAN (repeatable)')
        .env('CLAVITOR_CA_SAN')
        .argParser(collect),
    )
    .option('--days <n>', 'validity in days', '825')
    .action(
      action(async (o: { data: string; san?: string[] | string; days: string }) => {
        process.stdout.write(
          `${await issueServerCert(o.data, { sans: sans(o.san), days: days(o.days) })}\n`,
        )
      }),
    )

  ca.command('revoke')
    .description(
      'revoke a certificate (by serial, or every valid one of a POP) and rewrite the CRL',
    )
    .addOption(dataOption())
    .option('--id <pop>', 'revoke every valid certificate of this POP')
    .option('--serial <hex>', 'revoke this serial')
    .action(
      action(async (o: { data: string; id?: string; serial?: string }) => {
        if (!o.id && !o.serial)
          throw claError('CLA_ERR_INVALID_OPTION', 'give --id POP or --serial HEX')
        const serials = await revokeCert(o.data, { popId: o.id, serial: o.serial })
        process.stdout.write(
          `revoked ${serials.join(', ')}; CRL rewritten: ${caPaths(o.data).crl}\n`,
        )
      }),
    )

  ca.command('crl')
    .description('regenerate the CRL (valid 30 days: run at least monthly)')
    .addOption(dataOption())
    .action(
      action(async (o: { data: string }) => {
        process.stdout.write(`${await generateCrl(o.data)}\n`)
      }),
    )

  ca.command('list')
    .description('certificates the CA issued: status, serial, POP, expiry')
    .addOption(dataOption())
    .addOption(jsonOption())
    .action(
      action(async (o: { data: string; json?: boolean }) => {
        const rows = listCerts(o.data)
        if (o.json) return printJson(rows)
        for (const r of rows) {
          process.stdout.write(
            `${r.status.padEnd(8)} ${r.serial} ${(r.popId ?? r.subject).padEnd(20)} expires ${r.expires}` +
              (r.revokedAt ? ` revoked ${r.revokedAt}` : '') +
              '\n',
          )
        }
      }),
    )

  const pop = subcommand(program, 'pop', 'POP-side commands')
  pop
    .command('init')
    .description(
      'on the POP: make its Ed25519 key ({data}/pop-auth/key.pem, 0600) and a CSR for `clavitor ca issue-pop`',
    )
    .addOption(dataOption())
    .addOption(
      new Option('--id <pop>', 'this POP id, [a-z0-9-]{1,63}')
        .env('CLAVITOR_POP_ID')
        .makeOptionMandatory(),
    )
    .action(
      action(async (o: { data: string; id: string }) => {
        const r = await popInit(o.data, o.id)
        const p = popAuthPaths(o.data)
        process.stdout.write(
          `key: ${r.key} (stays here)\nCSR: ${r.csr}\n` +
            `Next: on the CA host, clavitor ca issue-pop --id ${o.id} --csr csr.pem --out ${o.id}.pem;\n` +
            `then copy the certificate to ${p.cert} and the CA certificate to ${p.ca}.\n`,
        )
      }),
    )
}

function readInput(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8')
  } catch (cause) {
    throw claError('CLA_ERR_INVALID_OPTION', `cannot read ${file}: ${(cause as Error).message}`, {
      cause,
    })
  }
}

function days(v: string): number {
  const n = Number(v)
  if (!Number.isSafeInteger(n) || n < 1 || n > 36500)
    throw claError('CLA_ERR_INVALID_OPTION', `--days must be 1..36500, got ${v}`)
  return n
}

function sans(v: string[] | string | undefined): string[] {
  if (v === undefined) return []
  return (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean)
}
