// The POP sync API routes (registered by server/pop-api.ts behind mTLS + signed requests).
// Thin: parse, call lib/core-sync, answer. The POP id comes from `request.popId`, set by the
// auth hook of the app that registers this plugin; a request without one is refused.
// GET /pop/v1/feed?wait=N is the long-poll (lib/core-sync/feed-wait.ts): the plugin holds
// one FeedWaiters for its app, closed with it.
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import type { Db } from '../../lib/db/open.js'
import { claError } from '../../lib/errors.js'
import { Checkpointer, type CheckpointStore } from '../../lib/core-sync/checkpointer.js'
import { FEED_MAX_WAIT_S, feedPageWaiting, parseWait } from '../../lib/core-sync/feed.js'
import { FeedWaiters } from '../../lib/core-sync/feed-wait.js'
import type { PublishListener } from '../../lib/store/publish-signal.js'
import { recordReport, validateReport } from '../../lib/core-sync/pop-state.js'

/** What the routes need from the core instance. */
export interface SyncCore {
  db: Db
  /** The core store (its id, generation, signing key, data folder and publish signal: BlobStore). */
  store: CheckpointStore & {
    readonly dataDir: string
    onPublished(listener: PublishListener): () => void
  }
  /** The core's checkpoint signer (Core.checkpoints); one is made for `store` when absent. */
  checkpoints?: Checkpointer
}

export interface SyncRoutesOptions {
  core: SyncCore
  /** Longest `wait` a POP may ask for, seconds. Default {@link FEED_MAX_WAIT_S}. */
  maxWaitS?: number
  /** Feed waits held at once (lib/core-sync/feed-wait.ts). Default 10,000. */
  maxWaiters?: number
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
  const maxWaitS = opts.maxWaitS ?? FEED_MAX_WAIT_S
  const waiters = new FeedWaiters({
    db: core.db,
    dataDir: core.store.dataDir,
    store: core.store,
    ...(opts.maxWaiters !== undefined ? { maxWaiters: opts.maxWaiters } : {}),
  })
  // before the server waits for its open requests: every long-poll answers at once
  app.addHook('preClose', async () => waiters.close())
  app.get('/pop/v1/feed', async (req, reply) => {
    const popId = popIdOf(req)
    const q = req.query as Record<string, string | undefined>
    // a wait longer than this server holds (its idle-socket timeout) is shortened, not refused
    const waitMs = Math.min(parseWait(q.wait), maxWaitS * 1000)
    // the POP hung up: the wait ends, nothing is answered (also when it hung up during the
    // authentication hooks, before this listener existed)
    const gone = new AbortController()
    reply.raw.once('close', () => gone.abort())
    if (reply.raw.destroyed || req.raw.socket?.destroyed) gone.abort()
    return feedPageWaiting(
      {
        db: core.db,
        storeId: core.store.storeId,
        generation: core.store.generation,
        checkpoints,
      },
      waiters,
      popId,
      {
        cursor: q.cursor ?? null,
        limit: q.limit as unknown as number,
        waitMs,
        signal: gone.signal,
      },
    )
  })
  app.post('/pop/v1/report', async (req) => {
    const popId = popIdOf(req)
    const row = recordReport(core.db, popId, validateReport(req.body))
    return { ok: true, state: row }
  })
}
