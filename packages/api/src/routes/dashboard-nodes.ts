import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { readNodeList } from '../reads.js'
import { DASHBOARD_SECURITY, NodeListBody, RedisUnavailable, TooManyFailures, Unauthorized } from '../route-schemas.js'

export interface NodesRoutesOptions {
  onlineWithinMs: number
}

/** `GET /dashboard/nodes`: every node seen within STALE_AFTER_MS, sorted by id, with its counts and age. */
const dashboardNodesRoutes: FastifyPluginAsyncTypebox<NodesRoutesOptions> = async (fastify, options) => {
  fastify.get(
    '/dashboard/nodes',
    {
      schema: {
        tags: ['dashboard'],
        summary: 'Every live node',
        description:
          'Every node whose last heartbeat is at most STALE_AFTER_MS (30 s) old, sorted by id. `status` is `online` while the last heartbeat is ' +
          "under ONLINE_WITHIN_MS (5 s) old, else `stale`. Ages are on the Redis server's clock.",
        security: DASHBOARD_SECURITY,
        response: { 200: NodeListBody, 401: Unauthorized, 429: TooManyFailures, 503: RedisUnavailable },
      },
      onRequest: fastify.verifyApiKey,
    },
    async (request) => readNodeList(fastify, request.log, options.onlineWithinMs),
  )
}

export default dashboardNodesRoutes
