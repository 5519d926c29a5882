import { fastifyPlugin } from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client'
import type { ClusterSnapshot, NodeListSnapshot } from '@tornado/shared'

/** What a store read is: the O(1) totals or the O(nodes) node list. */
export type StoreRead = 'totals' | 'nodes'
/** Where a Redis error was met. */
export type RedisErrorSource = StoreRead | 'ping' | 'connection'

/** Requests that matched no route share one label value, so a scanner cannot grow the series without bound. */
export const UNMATCHED_ROUTE = '(unmatched)'

/**
 * The API's Prometheus metrics, in a registry of its own (not prom-client's global one), so every app built in a
 * process (tests build many) counts only its own requests.
 */
export class ApiMetrics {
  readonly registry = new Registry()

  readonly httpRequests = new Counter({
    name: 'tornado_api_http_requests_total',
    help: 'HTTP requests answered, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    registers: [this.registry],
  })

  readonly httpDuration = new Histogram({
    name: 'tornado_api_http_request_duration_seconds',
    help: 'Time from receiving a request to sending the response, by method, route pattern and status code',
    labelNames: ['method', 'route', 'status_code'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [this.registry],
  })

  readonly storeReadDuration = new Histogram({
    name: 'tornado_api_store_read_duration_seconds',
    help: 'Duration of one aggregation read from Redis (coalesced: one read may answer many requests), by read and outcome',
    labelNames: ['read', 'outcome'] as const,
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1],
    registers: [this.registry],
  })

  readonly liveNodes = new Gauge({
    name: 'tornado_api_live_nodes',
    help: 'Nodes whose last heartbeat is at most STALE_AFTER_MS old, as of the latest totals read',
    registers: [this.registry],
  })

  readonly freshNodes = new Gauge({
    name: 'tornado_api_fresh_nodes',
    help: "Live nodes whose last heartbeat is younger than ONLINE_WITHIN_MS (the node table's online), as of the latest totals read",
    registers: [this.registry],
  })

  readonly staleNodes = new Gauge({
    name: 'tornado_api_stale_nodes',
    help: 'Live nodes whose last heartbeat is ONLINE_WITHIN_MS or older (still counted until STALE_AFTER_MS), as of the latest totals read',
    registers: [this.registry],
  })

  readonly prunedNodes = new Counter({
    name: 'tornado_api_pruned_nodes_total',
    help: 'Stale nodes removed from the store by the API reads (last heartbeat older than STALE_AFTER_MS)',
    registers: [this.registry],
  })

  readonly droppedRecords = new Counter({
    name: 'tornado_api_dropped_records_total',
    help: 'Garbage found under the prefix by the API reads and dropped (a record, node set or totals key that is not what the scripts write)',
    registers: [this.registry],
  })

  readonly redisUp = new Gauge({
    name: 'tornado_api_redis_up',
    help: '1 while Redis answers the API, 0 while it does not (as of the latest command or connection event)',
    registers: [this.registry],
  })

  readonly redisErrors = new Counter({
    name: 'tornado_api_redis_errors_total',
    help: 'Redis errors: failed store reads and readiness pings, and connection errors (one per reconnect attempt)',
    labelNames: ['source'] as const,
    registers: [this.registry],
  })

  constructor({ processMetrics = true }: { processMetrics?: boolean } = {}) {
    // Every label value exists from the start, so a rate() sees the first error rather than a new series.
    for (const source of ['totals', 'nodes', 'ping', 'connection'] as const) this.redisErrors.inc({ source }, 0)
    if (processMetrics) collectDefaultMetrics({ register: this.registry })
  }

  /** Runs one store read, timing it and recording what its snapshot says about the nodes. */
  async timeStoreRead<T extends ClusterSnapshot | NodeListSnapshot>(read: StoreRead, run: () => Promise<T>): Promise<T> {
    const end = this.storeReadDuration.startTimer({ read })
    let snapshot: T
    try {
      snapshot = await run()
    } catch (err) {
      end({ outcome: 'error' })
      this.redisErrors.inc({ source: read })
      throw err
    }
    end({ outcome: 'ok' })
    if (snapshot.pruned > 0) this.prunedNodes.inc(snapshot.pruned)
    if (snapshot.dropped > 0) this.droppedRecords.inc(snapshot.dropped)
    if ('liveNodes' in snapshot) {
      this.liveNodes.set(snapshot.liveNodes)
      this.freshNodes.set(snapshot.freshNodes)
      this.staleNodes.set(snapshot.liveNodes - snapshot.freshNodes)
    }
    return snapshot
  }
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: ApiMetrics
  }
}

export interface MetricsPluginOptions {
  /** Collect process metrics (CPU, memory, event loop lag, GC) too. */
  processMetrics?: boolean
}

/**
 * Counts every answered request by its route pattern (`/dashboard/cluster`, never the raw URL with its query) and
 * status. Register first: the hook then sees every route, and the Redis plugin times its reads through `metrics`.
 */
async function metricsPlugin(fastify: FastifyInstance, options: MetricsPluginOptions) {
  const metrics = new ApiMetrics(options)
  fastify.decorate('metrics', metrics)
  fastify.addHook('onResponse', async (request, reply) => {
    const labels = {
      method: request.method,
      route: request.routeOptions.url ?? UNMATCHED_ROUTE,
      status_code: String(reply.statusCode),
    }
    metrics.httpRequests.inc(labels)
    metrics.httpDuration.observe(labels, reply.elapsedTime / 1000)
  })
}

export default fastifyPlugin(metricsPlugin, { name: 'tornado-metrics', fastify: '5.x' })
