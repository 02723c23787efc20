/**
 * The WORM blob store on its own: signed, immutable `.cla` files in 256 shard folders,
 * sealed with `chattr`, indexed in SQLite (docs/store.md).
 *
 * ```ts
 * import { BlobStore } from 'clavitor-core/store'
 * const store = await BlobStore.init({ dataDir: '/tmp/blobs' })
 * const info = await store.put('a1'.repeat(16), Buffer.from('wl3 bytes'))
 * ```
 *
 * @packageDocumentation
 */
export {
  BlobStore,
  PROTECTIONS,
  compareCursor,
  decodeCursor,
  encodeCursor,
  probeSealing,
  storePaths,
  type BlobInfo,
  type ChangesPage,
  type CursorPos,
  type HealReport,
  type Identity,
  type IngestOptions,
  type InitOptions,
  type ProbeResult,
  type Protection,
  type PutOptions,
  type RebuildReport,
  type StagedFile,
  type StoreOptions,
  type StoreRole,
  type StoreStatus,
  type VerifiedStaged,
  type VerifyProblem,
  type VerifyReport,
  type VerifyStagedResult,
  type TreeEntry,
  type TreeIngestOptions,
  type VerifiedTree,
  type VerifyTreeOptions,
  type VerifyTreeResult,
  publishHintPath,
  watchPublished,
  type PublishListener,
  type PublishWatch,
} from '../lib/store/index.js'
export type { BlobIndex } from '../lib/store/blob-index.js'
