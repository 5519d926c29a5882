import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import type { ClusterTotals, NodeList } from '@tornado/shared'

/**
 * The reads behind the dashboard routes and the stream, with what each caller needs around them: Redis's
 * availability updated from the outcome, garbage drops logged, and a failure turned into 503 "Redis unavailable".
 */
/** Snapshots whose drops were logged: many requests share one coalesced read, its drops are logged once. */
const dropsLogged = new WeakSet<object>()

async function throughRedis<T extends { dropped: number }>(fastify: FastifyInstance, log: FastifyBaseLogger, read: () => Promise<T>): Promise<T> {
  let snapshot: T
  try {
    snapshot = await read()
  } catch (err) {
    fastify.redisAvailability.markDown((err as Error).message)
    throw fastify.httpErrors.serviceUnavailable('Redis unavailable')
  }
  fastify.redisAvailability.markUp()
  if (snapshot.dropped > 0 && !dropsLogged.has(snapshot)) {
    dropsLogged.add(snapshot)
    log.warn({ dropped: snapshot.dropped }, 'dropped garbage heartbeat records from the store')
  }
  return snapshot
}

export async function readClusterTotals(fastify: FastifyInstance, log: FastifyBaseLogger): Promise<ClusterTotals> {
  return (await throughRedis(fastify, log, fastify.readClusterSnapshot)).totals
}

/** Every live node in the body's shape and field order; `online` while younger than onlineWithinMs. */
export async function readNodeList(fastify: FastifyInstance, log: FastifyBaseLogger, onlineWithinMs: number): Promise<NodeList> {
  const snapshot = await throughRedis(fastify, log, fastify.readNodeSnapshot)
  return {
    nodes: snapshot.nodes.map((node) => ({
      id: node.id,
      hostname: node.hostname,
      ip: node.ip,
      downloading: node.counts.downloading,
      muxing: node.counts.muxing,
      uploading: node.counts.uploading,
      last_seen_ms_ago: node.lastSeenMsAgo,
      status: node.lastSeenMsAgo < onlineWithinMs ? ('online' as const) : ('stale' as const),
    })),
  }
}
