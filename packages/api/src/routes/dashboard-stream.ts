import { Type } from 'typebox'
import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox'
import { readClusterTotals, readNodeList } from '../reads.js'
import { BadQuery, DASHBOARD_SECURITY, RedisUnavailable, STREAM_EXAMPLE, TooManyFailures, Unauthorized } from '../route-schemas.js'
import { ClusterFeed, sseEvent, type TickChunks } from '../stream/cluster-feed.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The shared ticker behind every open `/dashboard/cluster/stream`. */
    clusterFeed: ClusterFeed
  }
}

export interface StreamRoutesOptions {
  onlineWithinMs: number
  /** Time between ticks (tests shorten it). */
  intervalMs?: number
}

/** A client that reads slower than this many bytes behind is cut off rather than buffered without bound. */
const MAX_BUFFERED_BYTES = 1 << 20
const UNAVAILABLE = sseEvent('error', { error: 'Redis unavailable' })
/** The last event of a stream whose key was revoked; the reconnect that follows gets a 401. */
const REVOKED = sseEvent('error', { error: 'API key revoked' })

const StreamQuery = Type.Object({
  nodes: Type.Optional(
    Type.Enum(['1', 'true', '0', 'false'], { description: '1 or true: also send a `nodes` event each tick, the body of GET /dashboard/nodes' }),
  ),
})

/**
 * `GET /dashboard/cluster/stream`: Server-Sent Events. Each second a `cluster` event (the body of GET
 * /dashboard/cluster), with ?nodes=1 a `nodes` event too; while Redis is unavailable an `error` event
 * {"error":"Redis unavailable"} instead, and the stream stays open.
 */
const dashboardStreamRoutes: FastifyPluginAsyncTypebox<StreamRoutesOptions> = async (fastify, options) => {
  const log = fastify.log.child({ component: 'stream' })
  const produce = async (withNodes: boolean): Promise<TickChunks> => {
    const [totals, nodes] = await Promise.allSettled([
      readClusterTotals(fastify, log),
      withNodes ? readNodeList(fastify, log, options.onlineWithinMs) : undefined,
    ])
    const cluster = totals.status === 'fulfilled' ? sseEvent('cluster', totals.value) : UNAVAILABLE
    // One error event per tick is enough for a client that wants both.
    const nodesChunk = nodes.status === 'fulfilled' ? sseEvent('nodes', nodes.value) : totals.status === 'fulfilled' ? UNAVAILABLE : ''
    return { cluster, clusterAndNodes: withNodes ? cluster + nodesChunk : cluster }
  }
  const feed = new ClusterFeed(produce, (err) => log.error({ err }, 'stream tick failed'), options.intervalMs)
  fastify.decorate('clusterFeed', feed)
  // Open streams never go idle: end them, or closing the server would wait for clients that never leave.
  fastify.addHook('preClose', async () => feed.close())

  fastify.get(
    '/dashboard/cluster/stream',
    {
      schema: {
        tags: ['dashboard'],
        summary: 'Live totals (and nodes) as Server-Sent Events',
        description:
          'One `cluster` event a second, its data the body of GET /dashboard/cluster; with `?nodes=1` also a `nodes` event, the body of GET /dashboard/nodes. ' +
          'While Redis is unavailable each tick sends `event: error` with `{"error":"Redis unavailable"}` and the stream stays open. ' +
          'Every listener shares one Redis read per tick. Browsers authenticate with the session cookie from POST /dashboard/session.',
        security: DASHBOARD_SECURITY,
        querystring: StreamQuery,
        response: {
          200: {
            description: 'An endless text/event-stream',
            content: { 'text/event-stream': { schema: Type.String(), example: STREAM_EXAMPLE } },
          },
          400: BadQuery,
          401: Unauthorized,
          429: TooManyFailures,
          503: RedisUnavailable,
        },
      },
      onRequest: fastify.verifyApiKey,
      // A HEAD would subscribe a client that never reads.
      exposeHeadRoute: false,
    },
    (request, reply) => {
      reply.hijack()
      const res = reply.raw
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache, no-store',
        connection: 'keep-alive',
        // nginx and similar proxies would otherwise buffer the stream.
        'x-accel-buffering': 'no',
      })
      res.write('retry: 2000\n\n') // how long a browser waits before reconnecting after the stream drops
      const wantsNodes = request.query.nodes === '1' || request.query.nodes === 'true'
      const opened = Date.now()
      request.log.info({ wantsNodes }, 'event stream opened')
      const unsubscribe = feed.subscribe({
        wantsNodes,
        send(chunk) {
          // A stream opened with a session ends with it: the browser reconnects, and a removed key gets no new one.
          if (request.sessionExpiresAtMs !== undefined && Date.now() >= request.sessionExpiresAtMs) {
            res.end()
            return
          }
          if (res.writableLength > MAX_BUFFERED_BYTES) {
            request.log.warn({ bufferedBytes: res.writableLength }, 'event stream client not reading: disconnected')
            res.destroy()
            return
          }
          res.write(chunk)
        },
        end: () => res.end(),
      })
      const unwatch = fastify.watchRevocation(request, () => {
        unsubscribe()
        request.log.info('event stream ended: its API key was revoked')
        res.end(REVOKED)
      })
      res.on('close', () => {
        unsubscribe()
        unwatch()
        request.log.info({ durationMs: Date.now() - opened }, 'event stream closed')
      })
    },
  )
}

export default fastifyPlugin(dashboardStreamRoutes, {
  name: 'tornado-dashboard-stream',
  fastify: '5.x',
  dependencies: ['tornado-redis', 'tornado-auth'],
})
