import type { FastifyInstance } from 'fastify'

/**
 * `GET /metrics`: Prometheus text format. No API key, like /health: scrapers rarely carry one, and nothing here is
 * secret (counts and timings only). Operators who do not want it exposed set METRICS_ENABLED=0.
 */
export default async function metricsRoutes(fastify: FastifyInstance) {
  const { metrics } = fastify
  fastify.get('/metrics', { schema: { hide: true } }, async (_request, reply) => {
    // A scrape refreshes the node gauge even when no dashboard is polling; the read is coalesced and O(1).
    try {
      await fastify.readClusterSnapshot()
      fastify.redisAvailability.markUp()
    } catch (err) {
      fastify.redisAvailability.markDown((err as Error).message) // already counted as a Redis error by the read
    }
    metrics.redisUp.set(fastify.redisAvailability.isAvailable ? 1 : 0)
    return reply.type(metrics.registry.contentType).send(await metrics.registry.metrics())
  })
}
