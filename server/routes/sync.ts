// The POP sync API routes (registered by server/pop-api.ts behind mTLS + signed requests).
// Thin: parse, call lib/core-sync, answer. The POP id comes from `request.popId`, set by the
// auth hook of the app that registers this plugin; a request without one is refused.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Db } from '../../lib/db/open.js'
import { claError } from '../../lib/errors.js'
import { Checkpointer, type CheckpointStore } from '../../lib/core-sync/checkpointer.js'
import { feedPage } from '../../lib/core-sync/feed.js'
import { recordReport, validateReport } from '../../lib/core-sync/pop-state.js'

/** What the routes need from the core instance. */
export interface SyncCore {
  db: Db
  /** The core store (its id, generation and signing key: BlobStore). */
  store: CheckpointStore
  /** The core's checkpoint signer (Core.checkpoints); one is made for `store` when absent. */
  checkpoints?: Checkpointer
}

export interface SyncRoutesOptions {
  core: SyncCore
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The authenticated POP id (set by the POP API's auth hook). */
    popId?: string
  }
}

function popIdOf(req: FastifyRequest): string {
  const id = req.popId
  if (!id) throw claError('CLA_ERR_SYNC_UNKNOWN_POP', 'request carries no authenticated POP id')
  return id
}

export const syncRoutes: FastifyPluginAsync<SyncRoutesOptions> = async (app, opts) => {
  const { core } = opts
  const checkpoints = core.checkpoints ?? new Checkpointer(core.store)
  app.get('/pop/v1/feed', async (req) => {
    popIdOf(req)
    const q = req.query as Record<string, string | undefined>
    return feedPage(
      {
        db: core.db,
        storeId: core.store.storeId,
        generation: core.store.generation,
        checkpoints,
      },
      { cursor: q.cursor ?? null, limit: q.limit as unknown as number },
    )
  })
  app.post('/pop/v1/report', async (req) => {
    const popId = popIdOf(req)
    const row = recordReport(core.db, popId, validateReport(req.body))
    return { ok: true, state: row }
  })
}
