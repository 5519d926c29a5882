import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { readClusterTotals } from '../reads.js'
import { ClusterTotalsBody, DASHBOARD_SECURITY, RedisUnavailable, TooManyFailures, Unauthorized } from '../route-schemas.js'

export const DashboardClusterSchema = {
  tags: ['dashboard'],
  summary: 'Cluster Stats',
  description:
    'Real-time totals across all worker nodes: the sums over every node whose last heartbeat is at most STALE_AFTER_MS (30 s) old, ' +
    "judged on the Redis server's clock. Meant to be polled every second.",
  security: DASHBOARD_SECURITY,
  response: {
    200: ClusterTotalsBody,
    401: Unauthorized,
    429: TooManyFailures,
    503: RedisUnavailable,
  },
}

/** `GET /dashboard/cluster`: the sums over every node whose last heartbeat is at most STALE_AFTER_MS old. */
const dashboardClusterRoutes: FastifyPluginAsyncTypebox = async (fastify) => {
  fastify.get(
    '/dashboard/cluster',
    { schema: DashboardClusterSchema, onRequest: fastify.verifyApiKey },
    async (request) => readClusterTotals(fastify, request.log),
  )
}

export default dashboardClusterRoutes
