// `clavitor store init|put|get|versions|verify|rebuild-index|status|trust|public-key`:
// the WORM .cla blob store (lib/store). Contract in docs/cli.md ("store").
import { readFileSync, writeFileSync } from 'node:fs'
import { Option, type Command } from 'commander'
import { claError } from '../../lib/errors.js'
import {
  BlobStore,
  PROTECTIONS,
  parsePublicKeyFile,
  validateP0,
  type BlobInfo,
  type Protection,
} from '../../lib/store/index.js'
import { action, dataOption, printJson } from './common.js'

const protectionOption = () =>
  new Option('--protection <mode>', 'sealing with chattr: enforce | best-effort | off')
    .choices(PROTECTIONS as string[])
    .env('CLAVITOR_PROTECTION')
    .default('best-effort')

const p0Option = () =>
  new Option('--p0 <hex>', 'the P0: lowercase hex, even length, 32..128 characters')
    .env('CLAVITOR_P0')
    .makeOptionMandatory()

interface Common {
  data: string
  protection: Protection
}

const warn = (m: string) => process.stderr.write(`clavitor: warning: ${m}\n`)

async function withStore<T>(opts: Common, fn: (s: BlobStore) => Promise<T>): Promise<T> {
  const store = await BlobStore.open({
    dataDir: opts.data,
    protection: opts.protection,
    onWarning: warn,
  })
  try {
    return await fn(store)
  } finally {
    await store.close()
  }
}

/** The JSON shape of one blob on the CLI (BlobInfo, documented in docs/cli.md). */
const blobJson = (i: BlobInfo) => ({ ...i })

function readKeyFile(file: string): Buffer {
  let bytes: Buffer
  try {
    bytes = readFileSync(file)
  } catch (cause) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      `cannot read key file ${file}: ${(cause as Error).message}`,
      {
        cause,
      },
    )
  }
  return parsePublicKeyFile(bytes, file)
}

async function readPayload(file: string | undefined): Promise<Buffer> {
  if (file !== undefined) {
    try {
      return readFileSync(file)
    } catch (cause) {
      throw claError(
        'CLA_ERR_INVALID_OPTION',
        `cannot read --file ${file}: ${(cause as Error).message}`,
        {
          cause,
        },
      )
    }
  }
  if (process.stdin.isTTY) {
    throw claError(
      'CLA_ERR_INVALID_OPTION',
      'give the payload with --file FILE or on stdin (a pipe)',
    )
  }
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

export function register(program: Command): void {
  const store = program
    .command('store')
    .description(
      'the WORM .cla blob store ({data}/store, index in {data}/meta.db, keys in {data}/keys)',
    )

  store
    .command('init')
    .description('create the store (idempotent): 256 shard folders, signing key, identity')
    .addOption(dataOption())
    .addOption(protectionOption())
    .option('--pop', 'a POP replica: no signing key; trusts the core key given by --trust-key')
    .option(
      '--trust-key <file>',
      "a trusted public key (the core's signing.pub: 32 raw bytes or 64 hex)",
    )
    .action(
      action(async (opts: Common & { pop?: boolean; trustKey?: string }) => {
        const trustKeys = opts.trustKey ? [readKeyFile(opts.trustKey)] : []
        const s = await BlobStore.init({
          dataDir: opts.data,
          protection: opts.protection,
          role: opts.pop ? 'pop' : 'core',
          trustKeys,
          onWarning: warn,
        })
        try {
          const st = s.status()
          printJson({
            store_id: st.store_id,
            generation: st.generation,
            role: st.role,
            root: st.root,
            key_id: st.key_id,
            trusted_key_ids: st.trusted_key_ids,
            protection: st.protection,
          })
        } finally {
          await s.close()
        }
      }),
    )

  store
    .command('put')
    .description(
      'store a new version of a p0 (payload from --file or stdin); prints the blob as JSON',
    )
    .addOption(dataOption())
    .addOption(protectionOption())
    .addOption(p0Option())
    .option('--file <file>', 'read the payload from this file (default: stdin)')
    .action(
      action(async (opts: Common & { p0: string; file?: string }) => {
        validateP0(opts.p0)
        const payload = await readPayload(opts.file)
        const info = await withStore(opts, (s) => s.put(opts.p0, payload))
        printJson(blobJson(info))
      }),
    )

  store
    .command('get')
    .description('write the latest (or --seq) verified payload of a p0 to stdout')
    .addOption(dataOption())
    .addOption(protectionOption())
    .addOption(p0Option())
    .option('--seq <n>', 'this version instead of the latest')
    .action(
      action(async (opts: Common & { p0: string; seq?: string }) => {
        validateP0(opts.p0)
        if (opts.seq !== undefined && !/^[1-9]\d{0,15}$/.test(opts.seq)) {
          throw claError(
            'CLA_ERR_INVALID_OPTION',
            `--seq must be a positive integer; got ${opts.seq}`,
          )
        }
        const payload = await withStore(opts, async (s) => {
          const info = opts.seq === undefined ? s.latest(opts.p0) : s.bySeq(Number(opts.seq))
          if (!info || info.p0 !== opts.p0) {
            throw claError(
              'CLA_ERR_NOT_FOUND',
              `no blob for p0 ${opts.p0}${opts.seq ? ` with seq ${opts.seq}` : ''}`,
            )
          }
          return s.readPayload(info)
        })
        process.stdout.write(payload)
      }),
    )

  store
    .command('versions')
    .description('print every version of a p0 as a JSON array, oldest first')
    .addOption(dataOption())
    .addOption(protectionOption())
    .addOption(p0Option())
    .action(
      action(async (opts: Common & { p0: string }) => {
        validateP0(opts.p0)
        printJson(await withStore(opts, async (s) => s.versions(opts.p0).map(blobJson)))
      }),
    )

  store
    .command('verify')
    .description(
      'check every file and index row; prints a JSON report; exit 0 if all is well, 1 if anything is missing, corrupt, unindexed or unsealed (valid files a writer has not indexed yet are listed as recoverable, not damage)',
    )
    .addOption(dataOption())
    .addOption(protectionOption())
    .action(
      action(async (opts: Common) => {
        const r = await withStore(opts, (s) => s.verify())
        printJson(r)
        if (r.recoverable.length > 0)
          process.stderr.write(
            `clavitor: store verify: ${r.recoverable.length} recoverable: valid files a writer has not indexed yet (indexed, unpublished, at the next open or write); not damage\n`,
          )
        if (!r.ok) {
          process.stderr.write(
            `clavitor: store verify: ${r.missing.length} missing, ${r.corrupt.length} corrupt, ${r.unindexed.length - r.recoverable.length} unindexed, ${r.unsealed.length} unsealed\n`,
          )
          process.exitCode = 1
        }
      }),
    )

  store
    .command('rebuild-index')
    .description(
      'index every valid .cla file that has no index row (from the files alone); prints JSON',
    )
    .addOption(dataOption())
    .addOption(protectionOption())
    .action(
      action(async (opts: Common) => {
        const r = await withStore(opts, (s) => s.rebuildIndex())
        printJson(r)
        if (r.corrupt.length + r.conflicts.length > 0) process.exitCode = 1
      }),
    )

  store
    .command('status')
    .description('print counts, bytes, keys and the protection mode in force as JSON')
    .addOption(dataOption())
    .addOption(protectionOption())
    .action(
      action(async (opts: Common) => {
        printJson(await withStore(opts, async (s) => s.status()))
      }),
    )

  store
    .command('trust')
    .description('trust another public key (e.g. the core key on a POP); prints its key id')
    .addOption(dataOption())
    .addOption(protectionOption())
    .requiredOption('--key <file>', 'public key file: 32 raw bytes or 64 hex characters')
    .action(
      action(async (opts: Common & { key: string }) => {
        const key = readKeyFile(opts.key)
        printJson({ key_id: await withStore(opts, async (s) => s.trustKey(key)) })
      }),
    )

  store
    .command('public-key')
    .description(
      "print the store's signing key id and public key (hex); --out writes the raw 32 bytes for a POP",
    )
    .addOption(dataOption())
    .addOption(protectionOption())
    .option(
      '--out <file>',
      'write the raw 32-byte public key here (give it to `store init --pop --trust-key`)',
    )
    .action(
      action(async (opts: Common & { out?: string }) => {
        const k = await withStore(opts, async (s) => s.exportPublicKey())
        if (opts.out) writeFileSync(opts.out, k.publicKey, { mode: 0o644 })
        printJson({
          key_id: k.keyId,
          public_key: k.publicKey.toString('hex'),
          ...(opts.out ? { out: opts.out } : {}),
        })
      }),
    )
}
