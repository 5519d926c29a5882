import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { Type } from 'typebox'
import { RedisUnavailable } from '../route-schemas.js'

export const ReadyBody = Type.Object({ status: Type.Literal('ready') }, { additionalProperties: false })

/**
 * Readiness: 200 only while Redis answers a PING (the fail-fast client answers or fails within about a second), so
 * a load balancer sends no traffic to an API that could only answer 503. /health stays the liveness check.
 */
const readyRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/ready',
    {
      schema: {
        tags: ['health'],
        summary: 'Readiness: 200 while Redis answers, else 503',
        response: { 200: ReadyBody, 503: RedisUnavailable },
      },
    },
    async () => {
      try {
        await fastify.redis.ping()
      } catch (err) {
        fastify.metrics.redisErrors.inc({ source: 'ping' })
        fastify.redisAvailability.markDown((err as Error).message)
        throw fastify.httpErrors.serviceUnavailable('Redis unavailable')
      }
      fastify.redisAvailability.markUp()
      return { status: 'ready' as const }
    },
  )
}

export default readyRoutes
