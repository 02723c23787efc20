// POST /webhooks/paddle: Paddle's notifications. Thin: this plugin keeps the raw body
// (application/json parsed as a Buffer, in this plugin's scope only, so other routes
// keep normal JSON), and lib/billing/webhooks.ts verifies the signature on those exact
// bytes before anything is stored, records the event and applies it.
import type { FastifyPluginAsync } from 'fastify'
import type { Billing } from '../../lib/billing/billing.js'
import { handlePaddleWebhook } from '../../lib/billing/webhooks.js'

export interface PaddleWebhookRoutesOptions {
  core: { billing: Billing }
}

export const paddleWebhookRoutes: FastifyPluginAsync<PaddleWebhookRoutesOptions> = async (
  app,
  opts,
) => {
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser(
    'application/json',
    { parseAs: 'buffer', bodyLimit: 1024 * 1024 },
    (_req, body, done) => {
      done(null, body)
    },
  )
  app.post('/webhooks/paddle', async (req, reply) => {
    const raw = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0)
    const sig = req.headers['paddle-signature']
    const result = handlePaddleWebhook(
      opts.core.billing,
      raw,
      Array.isArray(sig) ? sig.join(';') : sig,
    )
    const facts = {
      event_id: result.event_id,
      event_type: result.event_type,
      outcome: result.outcome,
    }
    // A parked event is an alarm (its audit row is written): loud here too. Still 200, so
    // Paddle does not retry a delivery that will never be applied.
    if (result.alarm) req.log.error({ ...facts, alarm: true }, result.alarm)
    else req.log.info(facts, 'paddle webhook')
    return reply.status(200).send({ ok: true, outcome: result.outcome })
  })
}

export default paddleWebhookRoutes
