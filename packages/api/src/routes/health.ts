import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'

export const HealthBody = Type.Object({ status: Type.Literal('ok') }, { additionalProperties: false })

/** Liveness only: answers while the process is up, whatever Redis is doing (the dashboard route reports that). */
const healthRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/health',
    { schema: { tags: ['health'], summary: 'Liveness: answers while the process is up, whatever Redis does', response: { 200: HealthBody } } },
    async () => ({ status: 'ok' as const }))
}

export default healthRoutes
