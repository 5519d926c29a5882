import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { ClusterTotals, ErrorBody, type ClusterSnapshot } from '@tornado/shared'

export const DashboardClusterSchema = {
  response: {
    200: ClusterTotals,
    401: ErrorBody,
    503: ErrorBody,
  },
}

/** `GET /dashboard/cluster`: the sums over every node whose last heartbeat is at most STALE_AFTER_MS old. */
const dashboardClusterRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/dashboard/cluster',
    { schema: DashboardClusterSchema, onRequest: fastify.verifyApiKey },
    async (request) => {
      let snapshot: ClusterSnapshot
      try {
        snapshot = await fastify.readClusterSnapshot()
      } catch (err) {
        fastify.redisAvailability.markDown((err as Error).message)
        throw fastify.httpErrors.serviceUnavailable('Redis unavailable')
      }
      fastify.redisAvailability.markUp()
      if (snapshot.dropped > 0) {
        request.log.warn({ dropped: snapshot.dropped }, 'dropped garbage heartbeat records from the store')
      }
      return snapshot.totals
    },
  )
}

export default dashboardClusterRoutes
