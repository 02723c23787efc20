// The per-file checks every path into the store shares (write, ingest, verify, rebuild):
// the index row a decoded header makes, that header against what a caller expects (the
// feed's claim, the index row), and a failure as a verify problem.
import { claError, isClavitorError } from '../errors.js'
import type { BlobInfo } from './blob-index.js'
import { fileSha256 } from './chain.js'
import { parseBlobPath, type DecodedCla } from './format.js'

/** Shape of one problem in a verify report. */
export interface VerifyProblem {
  path: string
  code: string
  message: string
}

/** The whole file a decoded .cla views (its signed bytes and signature are one buffer). */
export function wholeFile(d: DecodedCla): Buffer {
  return Buffer.from(d.signed.buffer, d.signed.byteOffset, d.fileSize)
}

/** The index row of a decoded file at `path`; `file_sha256` is computed unless given. */
export function infoOf(d: DecodedCla, path: string, file_sha256?: string): BlobInfo {
  return {
    seq: d.seq,
    created_at: d.createdAt,
    p0: d.p0,
    path,
    size: d.size,
    file_size: d.fileSize,
    sha256: d.sha256,
    key_id: d.keyId,
    file_sha256: file_sha256 ?? fileSha256(wholeFile(d)),
  }
}

export function problemOf(path: string, err: unknown): VerifyProblem {
  if (isClavitorError(err)) return { path, code: err.code, message: err.message }
  return { path, code: 'CLA_ERR_INTERNAL', message: (err as Error).message }
}

/** Every given field of `expect` must equal the decoded header; the path must fit p0 and created_at. */
export function checkExpect(d: DecodedCla, name: string, expect: Partial<BlobInfo>): void {
  const actual = infoOf(d, expect.path ?? '', '')
  for (const k of ['seq', 'created_at', 'p0', 'size', 'file_size', 'sha256', 'key_id'] as const) {
    if (expect[k] !== undefined && expect[k] !== actual[k]) {
      throw claError(
        'CLA_ERR_HEADER_MISMATCH',
        `${name}: header ${k} is ${actual[k]}, expected ${expect[k]}`,
        {
          details: { file: name, field: k },
        },
      )
    }
  }
  if (expect.path !== undefined) {
    const p = parseBlobPath(expect.path)
    if (!p || p.p0 !== d.p0 || p.createdAt !== d.createdAt) {
      throw claError(
        'CLA_ERR_HEADER_MISMATCH',
        `${name}: path ${expect.path} does not fit p0 ${d.p0} and created_at ${d.createdAt}`,
        {
          details: { file: name, field: 'path' },
        },
      )
    }
  }
}
