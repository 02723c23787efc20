// Request ids: every request gets a random UUID (never one a client chose, so log lines
// cannot be forged across requests), logged by Fastify as `reqId` and returned in the
// `x-request-id` response header so a caller can quote it in a support ticket.
import { randomUUID } from 'node:crypto'
import type { FastifyPluginAsync } from 'fastify'
import fp from 'fastify-plugin'

export const requestIdOptions = { genReqId: () => randomUUID(), requestIdHeader: false } as const

const plugin: FastifyPluginAsync = async (app) => {
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id)
  })
}

export const requestIdPlugin = fp(plugin, { name: 'clavitor-request-id', fastify: '5.x' })
