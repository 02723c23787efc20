// Sealing with Linux file attributes through chattr (e2fsprogs), batched: one process per
// batch of paths, with long argument lists cut into chunks like xargs does.
//   +i on sealed files: no write, truncate, rename, link or unlink.
//   +a on p0, shard and root folders: names may be added, none removed or renamed.
import { randomBytes } from 'node:crypto'
import { rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { execa } from 'execa'
import { claError } from '../errors.js'

/** Max bytes of path arguments per chattr/lsattr process (well under ARG_MAX). */
export const ARG_CHUNK_BYTES = 96 * 1024

export function chunkArgs(paths: readonly string[], maxBytes = ARG_CHUNK_BYTES): string[][] {
  const chunks: string[][] = []
  let cur: string[] = []
  let bytes = 0
  for (const p of paths) {
    const len = Buffer.byteLength(p) + 1
    if (cur.length > 0 && bytes + len > maxBytes) {
      chunks.push(cur)
      cur = []
      bytes = 0
    }
    cur.push(p)
    bytes += len
  }
  if (cur.length > 0) chunks.push(cur)
  return chunks
}

/** Runs `chattr FLAGS -- paths…` in as few processes as the argument limit allows. */
export async function chattr(flags: string[], paths: readonly string[]): Promise<void> {
  for (const chunk of chunkArgs(paths)) {
    try {
      await execa('chattr', [...flags, '--', ...chunk], { stdin: 'ignore' })
    } catch (cause) {
      const e = cause as { stderr?: string; shortMessage?: string; message: string }
      const why = (e.stderr || e.shortMessage || e.message).trim().split('\n')[0]
      throw claError(
        'CLA_ERR_SEAL_FAILED',
        `chattr ${flags.join(' ')} failed on ${chunk.length} path(s): ${why}`,
        {
          cause,
          details: { first: chunk[0] },
        },
      )
    }
  }
}

export const sealFiles = (paths: readonly string[]) => chattr(['+i'], paths)
export const sealDirs = (paths: readonly string[]) => chattr(['+a'], paths)

/**
 * Reads attribute flags with `lsattr -d`, batched. Returns a map path → flag string (the
 * first column, e.g. `----i---------e-------`). Paths lsattr cannot read are absent.
 */
export async function readAttrs(paths: readonly string[]): Promise<Map<string, string>> {
  const out = new Map<string, string>()
  for (const chunk of chunkArgs(paths)) {
    const r = await execa('lsattr', ['-d', '--', ...chunk], { stdin: 'ignore', reject: false })
    for (const line of r.stdout.split('\n')) {
      const i = line.indexOf(' ')
      if (i > 0) out.set(line.slice(i + 1), line.slice(0, i))
    }
  }
  return out
}

export const hasFlag = (flags: string | undefined, f: 'i' | 'a'): boolean =>
  flags !== undefined && flags.includes(f)

export interface ProbeResult {
  honoured: boolean
  reason?: string
}

/**
 * Checks once whether this filesystem honours chattr +i for us: seals a probe file in
 * `dir`, checks that unlink is refused, then unseals and removes it.
 */
export async function probeSealing(dir: string): Promise<ProbeResult> {
  const probe = join(dir, `.seal-probe-${randomBytes(6).toString('hex')}`)
  writeFileSync(probe, 'probe')
  try {
    try {
      await execa('chattr', ['+i', '--', probe], { stdin: 'ignore' })
    } catch (cause) {
      const e = cause as { stderr?: string; code?: string; shortMessage?: string }
      const why =
        e.code === 'ENOENT'
          ? 'chattr is not installed (apt-get install e2fsprogs)'
          : (e.stderr || e.shortMessage || 'chattr failed').trim()
      return { honoured: false, reason: why.split('\n')[0]! }
    }
    try {
      unlinkSync(probe)
      return {
        honoured: false,
        reason: 'chattr +i succeeded but the filesystem still allowed unlink',
      }
    } catch {
      return { honoured: true }
    }
  } finally {
    await execa('chattr', ['-i', '--', probe], { stdin: 'ignore', reject: false })
    rmSync(probe, { force: true })
  }
}

/** Clears +i/+a under `dir` recursively (teardown, staging cleanup). Never throws. */
export async function unsealTree(dir: string): Promise<void> {
  await execa('chattr', ['-R', '-i', '-a', '--', dir], { stdin: 'ignore', reject: false })
}
