// WL3 lookups for vaults: the latest WL3 of a P0 (raw payload, sha256 ETag, 304 on
// If-None-Match), the signed .cla itself, every version, and the POP's freshness (the core's
// signed checkpoint, a route and a header on every answer). Thin: lib/pop-sync/lookup.ts decides.
import type { FastifyPluginAsync } from 'fastify'
import { claError } from '../../lib/errors.js'
import type { Pop } from '../../lib/pop.js'

export interface Wl3RoutesOptions {
  pop: Pick<Pop, 'lookup'>
}

function matches(ifNoneMatch: string | undefined, etag: string): boolean {
  if (!ifNoneMatch) return false
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some((t) => t.trim().replace(/^W\//, '') === etag)
}

export const wl3Routes: FastifyPluginAsync<Wl3RoutesOptions> = async (app, opts) => {
  const { lookup } = opts.pop
  // Every lookup answer (and its errors) carries the POP's freshness: the core's signed
  // checkpoint of the replication log this POP holds (docs/replication.md "Freshness").
  // The hook and the WL3 routes are synchronous (a lookup is, from the index read to the
  // cache: lib/pop-sync/lookup.ts): no promise per answer. The routes send and return
  // nothing; Fastify answers a throw through the error handler as from an async route.
  app.addHook('onSend', (_req, reply, payload, done) => {
    const f = lookup.checkpoint()
    if (f) reply.header('clavitor-checkpoint', f.header)
    done(null, payload)
  })
  app.get('/api/v1/checkpoint', async (_req, reply) => {
    const f = lookup.checkpoint()
    if (!f)
      throw claError(
        'CLA_ERR_NOT_FOUND',
        'this POP holds no verified checkpoint yet (it has not completed a pull)',
      )
    reply.header('cache-control', 'no-cache')
    return f.checkpoint
  })
  app.get<{ Params: { p0: string } }>('/api/v1/wl3/:p0', (req, reply) => {
    const a = lookup.latest(req.params.p0)
    reply
      .header('etag', a.etag)
      .header('cache-control', 'no-cache')
      .header('x-clavitor-seq', String(a.info.seq))
    if (matches(req.headers['if-none-match'], a.etag)) reply.code(304).send()
    else reply.type('application/octet-stream').send(a.payload)
  })
  app.get<{ Params: { p0: string } }>('/api/v1/wl3/:p0/cla', (req, reply) => {
    const a = lookup.latest(req.params.p0, { signature: true })
    const etag = `"cla-${a.info.sha256}"`
    reply
      .header('etag', etag)
      .header('cache-control', 'no-cache')
      .header('x-clavitor-seq', String(a.info.seq))
    if (matches(req.headers['if-none-match'], etag)) reply.code(304).send()
    else reply.type('application/vnd.clavitor.cla').send(a.file)
  })
  app.get<{ Params: { p0: string } }>('/api/v1/wl3/:p0/versions', async (req) => {
    const versions = lookup.versions(req.params.p0)
    return {
      p0: req.params.p0,
      versions: versions.map((v) => ({
        seq: v.seq,
        created_at: v.created_at,
        size: v.size,
        sha256: v.sha256,
        key_id: v.key_id,
        path: v.path,
      })),
    }
  })
}
