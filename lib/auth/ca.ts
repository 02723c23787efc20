// The private CA for POP authentication: a thin wrapper of the `openssl` CLI (via execa).
//
//   {data}/ca/ca.key          CA private key, P-256, 0600 (never leaves this host)
//   {data}/ca/ca.pem          CA certificate (give this to POPs and to the POP API server)
//   {data}/ca/crl.pem         the current CRL (regenerated on every revoke; 30 days valid)
//   {data}/ca/server.key|pem  the core's POP API server key (P-256, 0600) and certificate
//   {data}/ca/openssl.cnf     `openssl ca` configuration; index.txt, serial, crlnumber, certs/
//
// POP certificates: subject CN=<pop id>, SAN URI urn:clavitor:pop:<id>, EKU clientAuth,
// keyUsage digitalSignature, for the public key in the POP's CSR (the POP made its
// Ed25519 key itself: `clavitor pop init`). The CA only ever sees the CSR.
//
// On the POP: {data}/pop-auth/key.pem (Ed25519, 0600), csr.pem, and once issued cert.pem
// and ca.pem (copied by the operator).
import { X509Certificate, createPublicKey, createHash, randomBytes } from 'node:crypto'
import { dataLayout } from '../db/data-dir.js'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { execa } from 'execa'
import { claError } from '../errors.js'

export const POP_ID_RE = /^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$/
export const POP_URI_PREFIX = 'urn:clavitor:pop:'

/** The CA's files under {data}/ca/ (absolute; lib/db/data-dir.ts has the whole layout). */
export function caPaths(dataDir: string) {
  return dataLayout(resolve(dataDir)).ca
}

/** A POP's credentials under {data}/pop-auth/ (absolute). */
export function popAuthPaths(dataDir: string) {
  const { dir, key, csr, cert, ca } = dataLayout(resolve(dataDir)).popAuth
  return { dir, key, csr, cert, ca }
}

export function assertPopId(id: string): void {
  if (!POP_ID_RE.test(id)) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `POP id "${id}" must be 1-63 of a-z, 0-9 and "-", not starting or ending with "-"`,
    )
  }
}

// Note: OpenSSL 3.0's `req -verify` and `ca` exit 0 on some failures (a CSR whose
// self-signature does not verify); callers check the output, not only the exit code.
async function openssl(
  args: string[],
  opts: { input?: string; env?: Record<string, string>; stderr?: (s: string) => void } = {},
): Promise<string> {
  // `openssl ca` reads and rewrites the CA's serial, index.txt and crlnumber files with no
  // lock of its own (its manual: "no locking is done on the various files"): certificates
  // issued in parallel on a loaded machine failed with "error while loading serial number".
  // Each runs under an flock of {ca}/ca.lock, across processes too.
  const cfg = args[0] === 'ca' ? args[args.indexOf('-config') + 1] : undefined
  const [cmd, argv] = cfg
    ? ['flock', ['-w', '60', join(dirname(cfg), 'ca.lock'), 'openssl', ...args]]
    : ['openssl', args]
  try {
    const r = await execa(cmd, argv, {
      input: opts.input,
      env: opts.env,
      stripFinalNewline: false,
    })
    opts.stderr?.(r.stderr)
    return r.stdout
  } catch (cause) {
    const e = cause as { stderr?: string; shortMessage?: string; code?: string }
    // a missing program: say which (flock comes with util-linux, openssl with openssl)
    const detail = (
      e.code === 'ENOENT' ? `${cmd} not found` : e.stderr || e.shortMessage || String(cause)
    )
      .trim()
      .split('\n')
      .slice(-3)
      .join(' | ')
    throw claError('CLA_ERR_AUTH_CA', `openssl ${args[0]} failed: ${detail}`, { cause })
  }
}

function writePrivate(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o600, flag: 'wx' })
  chmodSync(file, 0o600)
}

const CONFIG = (dir: string) => `# written by clavitor ca init; used by \`openssl ca\`
[ ca ]
default_ca = clavitor

[ clavitor ]
dir = ${dir}
database = $dir/index.txt
new_certs_dir = $dir/certs
certificate = $dir/ca.pem
private_key = $dir/ca.key
serial = $dir/serial
crlnumber = $dir/crlnumber
default_md = sha256
default_days = 365
default_crl_days = 30
policy = policy_any
unique_subject = no
copy_extensions = none
preserve = no

[ policy_any ]
commonName = supplied

[ req ]
distinguished_name = dn
[ dn ]

[ v3_ca ]
basicConstraints = critical,CA:TRUE,pathlen:0
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
`

export interface CaInitOptions {
  /** CA subject CN. Default "Clavitor POP CA". */
  cn?: string
  /** CA validity in days. Default 3650. */
  days?: number
  /** Extra server SANs besides DNS:localhost and IP:127.0.0.1 (plain names or IPs). */
  serverSans?: string[]
  /** Server certificate validity in days. Default 825. */
  serverDays?: number
}

/** Creates the CA (key, self-signed cert, empty CRL) and the core's server certificate. */
export async function initCa(
  dataDir: string,
  opts: CaInitOptions = {},
): Promise<{ caCert: string; serverCert: string }> {
  const p = caPaths(dataDir)
  if (existsSync(p.key) || existsSync(p.cert)) {
    throw claError('CLA_ERR_AUTH_CA', `a CA exists already in ${p.dir}; it is never overwritten`)
  }
  mkdirSync(p.certs, { recursive: true, mode: 0o700 })
  chmodSync(p.dir, 0o700)
  writeFileSync(p.config, CONFIG(p.dir))
  writeFileSync(p.index, '')
  writeFileSync(p.index + '.attr', 'unique_subject = no\n')
  // random positive 64-bit serials start; openssl increments from here
  writeFileSync(p.serial, '10' + randomBytes(8).toString('hex').toUpperCase() + '\n')
  writeFileSync(p.crlnumber, '1000\n')
  const key = await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'])
  writePrivate(p.key, key)
  await openssl([
    'req',
    '-config',
    p.config,
    '-new',
    '-x509',
    '-key',
    p.key,
    '-subj',
    `/CN=${opts.cn ?? 'Clavitor POP CA'}`,
    '-days',
    String(opts.days ?? 3650),
    '-extensions',
    'v3_ca',
    '-out',
    p.cert,
  ])
  await generateCrl(dataDir)
  await issueServerCert(dataDir, { sans: opts.serverSans ?? [], days: opts.serverDays })
  return { caCert: p.cert, serverCert: p.serverCert }
}

function requireCa(dataDir: string) {
  const p = caPaths(dataDir)
  if (!existsSync(p.key) || !existsSync(p.cert) || !existsSync(p.config)) {
    throw claError(
      'CLA_ERR_AUTH_CA',
      `no CA in ${p.dir}; run \`clavitor ca init --data ${dataDir}\` first`,
    )
  }
  return p
}

/** (Re)issues the core's server certificate: DNS:localhost, IP:127.0.0.1 and `sans`. */
export async function issueServerCert(
  dataDir: string,
  opts: { sans?: string[]; days?: number } = {},
): Promise<string> {
  const p = requireCa(dataDir)
  const sans = ['DNS:localhost', 'IP:127.0.0.1']
  for (const s of opts.sans ?? []) {
    if (!/^[A-Za-z0-9.:-]+$/.test(s))
      throw claError('CLA_ERR_INVALID_OPTION', `server SAN "${s}" is not a host name or IP`)
    const entry = /^[0-9.]+$/.test(s) || s.includes(':') ? `IP:${s}` : `DNS:${s}`
    if (!sans.includes(entry)) sans.push(entry)
  }
  const tmpKey = p.serverKey + '.new'
  rmSync(tmpKey, { force: true })
  writePrivate(
    tmpKey,
    await openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256']),
  )
  const csr = await openssl(['req', '-new', '-key', tmpKey, '-subj', '/CN=clavitor-core'])
  const ext = join(p.dir, 'server.ext')
  writeFileSync(
    ext,
    `[ server ]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n` +
      `subjectAltName = ${sans.join(',')}\nauthorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n`,
  )
  const certPem = await signCsr(p, csr, '/CN=clavitor-core', ext, 'server', opts.days ?? 825)
  renameSync(tmpKey, p.serverKey)
  writeFileSync(p.serverCert, certPem)
  return p.serverCert
}

async function signCsr(
  p: ReturnType<typeof caPaths>,
  csrPem: string,
  subj: string,
  extFile: string,
  ext: string,
  days: number,
): Promise<string> {
  const csrFile = join(p.dir, `req-${randomBytes(6).toString('hex')}.csr`)
  const outFile = csrFile.replace(/\.csr$/, '.pem')
  writeFileSync(csrFile, csrPem)
  try {
    let caErr = ''
    await openssl(
      [
        'ca',
        '-config',
        p.config,
        '-batch',
        '-notext',
        '-in',
        csrFile,
        '-subj',
        subj,
        '-days',
        String(days),
        '-extfile',
        extFile,
        '-extensions',
        ext,
        '-out',
        outFile,
      ],
      { stderr: (e) => (caErr = e) },
    )
    const pemOut = existsSync(outFile) ? readFileSync(outFile, 'utf8') : ''
    if (!pemOut.includes('BEGIN CERTIFICATE')) {
      throw claError(
        'CLA_ERR_AUTH_CA',
        `openssl ca did not issue a certificate: ${caErr.trim().split('\n').slice(-2).join(' | ')}`,
      )
    }
    return pemOut
  } finally {
    rmSync(csrFile, { force: true })
    rmSync(outFile, { force: true })
  }
}

export interface IssuedCert {
  popId: string
  certPem: string
  /** sha256 of the certificate DER, lowercase hex (the pops.cert_fingerprint). */
  fingerprint: string
  /** The POP's Ed25519 public key, raw 32 bytes, base64 (the pops.public_key). */
  publicKey: string
  /** Serial, uppercase hex as openssl prints it. */
  serial: string
  notAfter: string
}

/** Signs a POP's CSR (which must hold an Ed25519 key) into a client certificate. */
export async function issuePopCert(
  dataDir: string,
  opts: { popId: string; csrPem: string; days?: number },
): Promise<IssuedCert> {
  assertPopId(opts.popId)
  const p = requireCa(dataDir)
  // openssl req -verify checks the CSR's self-signature (proof the POP holds the key).
  let verdict = ''
  await openssl(['req', '-verify', '-noout'], { input: opts.csrPem, stderr: (e) => (verdict = e) })
  if (!/verify OK/.test(verdict)) {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      'the CSR self-signature does not verify (corrupted or not made with its key)',
    )
  }
  const pub = await openssl(['req', '-pubkey', '-noout'], { input: opts.csrPem })
  if (createPublicKey(pub).asymmetricKeyType !== 'ed25519') {
    throw claError(
      'CLA_ERR_INVALID_INPUT',
      'the CSR must hold an Ed25519 key (made by `clavitor pop init`)',
    )
  }
  const ext = join(p.dir, `pop-${opts.popId}.ext`)
  writeFileSync(
    ext,
    `[ pop ]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature\nextendedKeyUsage = clientAuth\n` +
      `subjectAltName = URI:${POP_URI_PREFIX}${opts.popId}\nauthorityKeyIdentifier = keyid\nsubjectKeyIdentifier = hash\n`,
  )
  const certPem = await signCsr(p, opts.csrPem, `/CN=${opts.popId}`, ext, 'pop', opts.days ?? 365)
  return describeCert(certPem, opts.popId)
}

export function certFingerprint(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex')
}

/** Ed25519 raw public key of a certificate, base64; undefined for other key types. */
export function ed25519PublicKeyBase64(cert: X509Certificate): string | undefined {
  const k = cert.publicKey
  if (k.asymmetricKeyType !== 'ed25519') return undefined
  const jwk = k.export({ format: 'jwk' }) as { x?: string }
  return jwk.x ? Buffer.from(jwk.x, 'base64url').toString('base64') : undefined
}

/** The POP id named by a certificate's SAN URI urn:clavitor:pop:<id>, if exactly one. */
export function popIdFromCert(cert: X509Certificate): string | undefined {
  const san = cert.subjectAltName ?? ''
  const ids = san
    .split(', ')
    .filter((s) => s.startsWith('URI:' + POP_URI_PREFIX))
    .map((s) => s.slice(('URI:' + POP_URI_PREFIX).length))
  return ids.length === 1 && POP_ID_RE.test(ids[0]!) ? ids[0] : undefined
}

export function describeCert(certPem: string, popId?: string): IssuedCert {
  const cert = new X509Certificate(certPem)
  return {
    popId: popId ?? popIdFromCert(cert) ?? '',
    certPem,
    fingerprint: certFingerprint(cert.raw),
    publicKey: ed25519PublicKeyBase64(cert) ?? '',
    serial: cert.serialNumber.toUpperCase(),
    notAfter: cert.validTo,
  }
}

/** Revokes certificates (by serial, or every valid one of a POP) and rewrites the CRL. */
export async function revokeCert(
  dataDir: string,
  opts: { serial?: string; popId?: string },
): Promise<string[]> {
  const p = requireCa(dataDir)
  const targets = listCerts(dataDir).filter(
    (c) =>
      c.status === 'valid' &&
      ((opts.serial !== undefined && normSerial(c.serial) === normSerial(opts.serial)) ||
        (opts.popId !== undefined && c.subject === `/CN=${opts.popId}`)),
  )
  if (targets.length === 0)
    throw claError('CLA_ERR_NOT_FOUND', 'no valid certificate matches; see `clavitor ca list`')
  for (const c of targets) {
    await openssl(['ca', '-config', p.config, '-revoke', join(p.certs, `${c.serial}.pem`)])
  }
  await generateCrl(dataDir)
  const now = listCerts(dataDir)
  const missed = targets.filter((t) => now.find((c) => c.serial === t.serial)?.status !== 'revoked')
  if (missed.length)
    throw claError(
      'CLA_ERR_AUTH_CA',
      `openssl did not revoke ${missed.map((c) => c.serial).join(', ')}`,
    )
  return targets.map((c) => c.serial)
}

/** Regenerates {data}/ca/crl.pem (valid 30 days: run again from cron, or on every revoke). */
export async function generateCrl(dataDir: string): Promise<string> {
  const p = caPaths(dataDir)
  const tmp = p.crl + '.new'
  await openssl(['ca', '-config', p.config, '-gencrl', '-out', tmp])
  renameSync(tmp, p.crl)
  return p.crl
}

export interface CaCertEntry {
  status: 'valid' | 'revoked' | 'expired'
  serial: string
  subject: string
  popId: string | undefined
  expires: string
  revokedAt: string | undefined
}

/** Everything the CA issued, from its index.txt. */
export function listCerts(dataDir: string): CaCertEntry[] {
  const p = requireCa(dataDir)
  const out: CaCertEntry[] = []
  for (const line of readFileSync(p.index, 'utf8').split('\n')) {
    if (!line) continue
    const [st, exp, rev, serial, , subject] = line.split('\t')
    const cn = /\/CN=([^/]+)/.exec(subject ?? '')?.[1]
    out.push({
      status:
        st === 'R' ? 'revoked' : st === 'E' || asnTime(exp) < new Date() ? 'expired' : 'valid',
      serial: serial ?? '',
      subject: subject ?? '',
      popId: cn && cn !== 'clavitor-core' ? cn : undefined,
      expires: asnTime(exp).toISOString(),
      revokedAt: rev ? asnTime(rev.split(',')[0]).toISOString() : undefined,
    })
  }
  return out
}

function asnTime(s: string | undefined): Date {
  // YYMMDDHHMMSSZ
  const m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s ?? '')
  if (!m) return new Date(0)
  const y = Number(m[1])
  return new Date(
    Date.UTC(
      y < 50 ? 2000 + y : 1900 + y,
      Number(m[2]) - 1,
      Number(m[3]),
      Number(m[4]),
      Number(m[5]),
      Number(m[6]),
    ),
  )
}

export function normSerial(s: string): string {
  return s.toUpperCase().replace(/^0+(?=.)/, '')
}

// --- POP side ------------------------------------------------------------------------

/** On the POP: makes its Ed25519 key (0600) and a CSR naming it. The key never leaves. */
export async function popInit(
  dataDir: string,
  popId: string,
): Promise<{ key: string; csr: string; csrPem: string }> {
  assertPopId(popId)
  const p = popAuthPaths(dataDir)
  if (existsSync(p.key))
    throw claError(
      'CLA_ERR_AUTH_CA',
      `a POP key exists already at ${p.key}; it is never overwritten`,
    )
  mkdirSync(p.dir, { recursive: true, mode: 0o700 })
  const key = await openssl(['genpkey', '-algorithm', 'ed25519'])
  writePrivate(p.key, key)
  const csrPem = await openssl(['req', '-new', '-key', p.key, '-subj', `/CN=${popId}`])
  writeFileSync(p.csr, csrPem)
  return { key: p.key, csr: p.csr, csrPem }
}

// --- CRL (core side, per request) ------------------------------------------------------

/**
 * The revoked serials of a CRL file, re-read when the file changes (mtime/size), so a
 * revocation takes effect on the next request, even on an open keep-alive connection.
 */
export class CrlCache {
  private key = ''
  private serials = new Set<string>()
  constructor(readonly file: string) {}

  async revokedSerials(): Promise<Set<string>> {
    let st
    try {
      st = statSync(this.file)
    } catch (cause) {
      throw claError('CLA_ERR_AUTH_CA', `cannot read the CRL ${this.file}`, { cause })
    }
    const key = `${st.mtimeMs}:${st.size}:${st.ino}`
    if (key !== this.key) {
      const text = await openssl(['crl', '-in', this.file, '-noout', '-text'])
      const set = new Set<string>()
      for (const m of text.matchAll(/Serial Number: ([0-9A-Fa-f]+)/g)) set.add(normSerial(m[1]!))
      this.serials = set
      this.key = key
    }
    return this.serials
  }

  async isRevoked(serial: string): Promise<boolean> {
    return (await this.revokedSerials()).has(normSerial(serial))
  }
}
