import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import {
  createRedisConnection,
  HeartbeatStore,
  waitForReady,
  type ClusterSnapshot,
  type NodeListSnapshot,
  type RedisClient,
  type SentinelConfig,
  type StoreLayout,
} from '@tornado/shared'
import { coalesce } from '../coalesce.js'

export interface RedisPluginOptions {
  url: string
  clusterNodes?: { host: string; port: number }[] | undefined
  sentinel?: SentinelConfig | undefined
  layout: StoreLayout
  staleAfterMs: number
  /** Nodes seen within this are counted fresh (the node table's `online`), older live ones stale. */
  onlineWithinMs: number
  totalsCacheMs: number
}

/** How long start-up waits for Redis before serving 503s until it comes. */
const READY_WAIT_MS = 2_000

/**
 * Whether Redis answers, as seen by connection events and by the outcome of requests (a paused Redis keeps its
 * connection open, so only a timed-out command tells). Logs transitions only: one warning per outage, one
 * info line when it ends, however many requests fail in between.
 */
export class RedisAvailability {
  private available: boolean | undefined
  private downSince = 0
  closing = false

  constructor(private readonly log: FastifyBaseLogger) {}

  markUp(): void {
    if (this.available === true) return
    if (this.available === false) {
      this.log.info({ outageMs: Date.now() - this.downSince }, 'Redis available again')
    } else {
      this.log.info('Redis connected')
    }
    this.available = true
  }

  /** Whether Redis answered last time anyone asked (false before it first did). */
  get isAvailable(): boolean {
    return this.available === true
  }

  markDown(reason: string): void {
    if (this.available === false || this.closing) return
    this.available = false
    this.downSince = Date.now()
    this.log.warn({ reason }, 'Redis unavailable: answering 503 until it returns')
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    redis: RedisClient
    store: HeartbeatStore
    /** The store's totals, coalesced: every dashboard polls each second, Redis need not answer each one. */
    readClusterSnapshot: () => Promise<ClusterSnapshot>
    /** Every live node, coalesced the same way: O(nodes) per read, so it must not run once per dashboard. */
    readNodeSnapshot: () => Promise<NodeListSnapshot>
    redisAvailability: RedisAvailability
  }
}

async function redisPlugin(fastify: FastifyInstance, options: RedisPluginOptions) {
  const log = fastify.log.child({ component: 'redis' })
  const availability = new RedisAvailability(log)
  const redis = createRedisConnection({ url: options.url, clusterNodes: options.clusterNodes, sentinel: options.sentinel })
  // Connection errors repeat on every reconnect attempt; the transition is what matters.
  redis.on('error', (err: Error) => {
    log.debug({ reason: err.message }, 'Redis connection error')
    fastify.metrics.redisErrors.inc({ source: 'connection' })
    availability.markDown(err.message)
  })
  redis.on('close', () => availability.markDown('connection closed'))
  redis.on('ready', () => availability.markUp())

  // decorate's conditional type splits the Redis | Cluster union and then accepts neither half: the value is right.
  fastify.decorate('redis', redis as never)
  const store = new HeartbeatStore(redis, options.layout, options.staleAfterMs)
  fastify.decorate('store', store)
  // Timed inside the coalescing: the histogram sees each Redis read once, however many requests shared it.
  const { metrics } = fastify
  fastify.decorate('readClusterSnapshot', coalesce(() => metrics.timeStoreRead('totals', () => store.readTotals(options.onlineWithinMs)), options.totalsCacheMs))
  fastify.decorate('readNodeSnapshot', coalesce(() => metrics.timeStoreRead('nodes', () => store.listNodes()), options.totalsCacheMs))
  fastify.decorate('redisAvailability', availability)

  fastify.addHook('onClose', async () => {
    availability.closing = true
    try {
      // QUIT lets Redis finish our in-flight commands; bounded by the client's command timeout.
      if (redis.status === 'ready') await redis.quit()
    } catch {
      // already gone: nothing to say goodbye to
    } finally {
      redis.disconnect()
    }
  })

  if (!(await waitForReady(redis, READY_WAIT_MS))) {
    availability.markDown(`not ready within ${READY_WAIT_MS} ms of start`)
  }
}

export default fastifyPlugin(redisPlugin, { name: 'tornado-redis', fastify: '5.x', dependencies: ['tornado-metrics'] })
