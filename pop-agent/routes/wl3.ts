// WL3 lookups for vaults: the latest WL3 of a P0 (raw payload, sha256 ETag, 304 on
// If-None-Match), the signed .cla itself, every version, and the POP's freshness (the core's
// signed checkpoint, a route and a header on every answer). Thin: lib/pop-sync/lookup.ts decides.
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify'
import { claError, errorResponse } from '../../lib/errors.js'
import type { Pop } from '../../lib/pop.js'
import type { Wl3Answer } from '../../lib/pop-sync/lookup.js'
import { wl3Response, type Wl3Form } from '../../lib/pop-sync/lookup-response.js'
import { fastLookupFailure } from '../fast-lookups.js'

export interface Wl3RoutesOptions {
  pop: Pick<Pop, 'lookup'>
}

export const wl3Routes: FastifyPluginAsync<Wl3RoutesOptions> = async (app, opts) => {
  const { lookup } = opts.pop
  // Every lookup answer (and its errors) carries the POP's freshness: the core's signed
  // checkpoint of the replication log this POP holds (docs/replication.md "Freshness").
  // The hook and the WL3 routes are synchronous (a lookup is, from the index read to the
  // cache: lib/pop-sync/lookup.ts): no promise per answer. The routes send and return
  // nothing; Fastify answers a throw through the error handler as from an async route.
  app.addHook('onSend', (req, reply, payload, done) => {
    let f
    try {
      f = lookup.checkpoint()
    } catch (err) {
      // An answer goes out with its freshness or not at all: the coded 500 in its place.
      // (A throw here would reach Fastify's last-resort handler, which sends the message.)
      req.log.error({ err }, 'the POP’s checkpoint could not be read')
      const { status, body } = errorResponse(err)
      for (const h of ['etag', 'cache-control', 'x-clavitor-seq']) reply.removeHeader(h)
      reply.code(status).type('application/json; charset=utf-8')
      return done(null, JSON.stringify(body))
    }
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
  // the fast path (pop-agent/fast-lookups.ts) answers these routes' successes before
  // Fastify, from the same lib/pop-sync/lookup-response.ts; here: what it hands on (its
  // lookup's error, thrown as it was), app.inject, and with the fast path off
  const send = (req: FastifyRequest, reply: FastifyReply, form: Wl3Form, a: Wl3Answer) => {
    const r = wl3Response(a, form, req.headers['if-none-match'])
    reply.header('etag', r.etag).header('cache-control', 'no-cache').header('x-clavitor-seq', r.seq)
    if (r.status === 304) reply.code(304).send()
    else reply.type(r.contentType!).send(r.body)
  }
  const latest = (req: FastifyRequest<{ Params: { p0: string } }>, form: Wl3Form) => {
    const failed = fastLookupFailure(req.raw)
    if (failed) throw failed.err
    return lookup.latest(req.params.p0, form === 'cla' ? { signature: true } : {})
  }
  app.get<{ Params: { p0: string } }>('/api/v1/wl3/:p0', (req, reply) => {
    send(req, reply, 'payload', latest(req, 'payload'))
  })
  app.get<{ Params: { p0: string } }>('/api/v1/wl3/:p0/cla', (req, reply) => {
    send(req, reply, 'cla', latest(req, 'cla'))
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
