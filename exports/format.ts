/**
 * The `.cla` file format and its keys, with nothing else of the engine: what a vault needs
 * to check a file it fetched from a POP (docs/format.md). Imports no SQLite, no Fastify.
 *
 * ```ts
 * import { makeKeyRing, verifyCla } from 'clavitor-core/format'
 * const ring = makeKeyRing([corePublicKey]) // raw 32-byte Ed25519 public keys
 * const { p0, payload } = verifyCla(fileBytes, ring) // throws CLA_ERR_BAD_SIGNATURE…
 * ```
 *
 * @packageDocumentation
 */
export {
  BLOB_PATH_RE,
  CLA_HEADER_FIXED,
  CLA_MAGIC,
  CLA_SIGNATURE_BYTES,
  CLA_VERSION,
  blobFileName,
  decodeCla,
  encodeCla,
  parseBlobPath,
  verifyCla,
  verifyClaAsync,
  type ClaHeader,
  type DecodedCla,
  type EncodeInput,
} from '../lib/store/format.js'
export {
  generateSigningKey,
  keyIdOf,
  makeKeyRing,
  parsePublicKeyFile,
  signingKeyFromSeed,
  trustedKeyFromRaw,
  type KeyRing,
  type SigningKey,
  type TrustedKey,
} from '../lib/store/keys.js'
export { P0_MAX_HEX, P0_MIN_HEX, isValidP0, shardOf, validateP0 } from '../lib/store/p0.js'
export { ClavitorError, isClavitorError, type ErrorCode } from '../lib/errors.js'
