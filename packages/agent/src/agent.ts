import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { performance } from 'node:perf_hooks'
import { HeartbeatStore, createRedisConnection, redactUrl, waitForReady, type JobCounts, type RedisClient } from '@tornado/shared'
import { pino, type Logger } from 'pino'
import { AgentMetrics } from './agent-metrics.js'
import type { AgentConfig } from './config.js'
import { HeartbeatLoop, describeError, type BeatWriter } from './heartbeat-loop.js'
import { HostInfoSource, type HostInfo } from './host-info.js'
import { buildLocalServer } from './local-server.js'
import { NodeCounts } from './node-counts.js'
import { ProcessMatcher } from './processes/process-rules.js'
import { ProcessTable } from './processes/process-table.js'
import { ProcessWatcher } from './processes/process-watcher.js'
import { Simulator } from './simulator.js'
import { isLoopback } from './token-auth.js'
import { WorkerRegistry } from './workers/worker-registry.js'

/**
 * How long shutdown waits for Redis (a beat in flight, then the removal) before giving up; the node then leaves
 * the totals by going stale. With closing the connection, stop() stays under about 3 s.
 */
export const SHUTDOWN_DEADLINE_MS = 2500
const REDIS_READY_WAIT_MS = 2000

export interface AgentDeps {
  logger?: Logger
  /** The agent's wall clock, stored as agentTimeMs; never used to judge age. */
  clock?: () => number
  readHostInfo?: () => Promise<HostInfo>
  /** Wraps the heartbeat store, e.g. to count or delay beats in tests. */
  wrapStore?: (store: HeartbeatStore) => BeatWriter
  /** The simulator's random source. */
  random?: () => number
  /** Monotonic milliseconds, for worker leases. */
  monotonicNow?: () => number
  /** Replaces the process table scan when watching processes (tests). */
  scanProcesses?: () => Promise<JobCounts>
  /** prom-client's process metrics on GET /metrics. Default true. */
  processMetrics?: boolean
}

export interface Agent {
  nodeId: string
  instanceId: string
  /** The local HTTP interface, e.g. http://127.0.0.1:7071. */
  url: string
  loop: HeartbeatLoop
  /** The node's counts as the next heartbeat carries them: workers' reports plus watched processes. */
  counts(): JobCounts
  /** undefined unless the agent watches processes. */
  processWatcher: ProcessWatcher | undefined
  /** The one shutdown path: idempotent, bounded by SHUTDOWN_DEADLINE_MS. */
  stop(): Promise<void>
}

/** JSON lines on stdout. Synchronous writes: a handful of lines a minute, and none lost or reordered at exit. */
export function createLogger(level: string): Logger {
  return pino({ name: 'tornado-agent', level, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination({ dest: 1, sync: true }))
}

export async function startAgent(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
  const logger = deps.logger ?? createLogger(config.logLevel)
  const clock = deps.clock ?? Date.now
  const instanceId = randomUUID()
  const { nodeId } = config
  logger.info(
    {
      event: 'config',
      node_id: nodeId,
      instance_id: instanceId,
      redis_url: redactUrl(config.redisUrl),
      redis_cluster_nodes: config.redisClusterNodes?.map(({ host, port }) => `${host}:${port}`).join(','),
      redis_sentinels: config.redisSentinel && `${config.redisSentinel.nodes.map(({ host, port }) => `${host}:${port}`).join(',')} (${config.redisSentinel.name})`,
      prefix: config.layout.prefix,
      shards: config.layout.shards,
      stale_after_ms: config.staleAfterMs,
      interval_ms: config.intervalMs,
      listen: `${config.listen.host}:${config.listen.port}`,
      agent_token: config.token === undefined ? 'unset' : 'set',
      simulate: config.simulate,
      watch_processes: config.watchProcesses,
      process_rules: config.watchProcesses ? (config.processRulesFile ?? 'built-in') : undefined,
      log_level: config.logLevel,
    },
    'starting tornado agent',
  )

  const redis: RedisClient = createRedisConnection({ url: config.redisUrl, clusterNodes: config.redisClusterNodes, sentinel: config.redisSentinel })
  // Outages are logged once by the heartbeat loop, not per reconnect attempt; it reports the last connection error.
  let connectionError = ''
  const onConnectionError = (err: Error) => (connectionError = describeError(err))
  redis.on('error', onConnectionError)
  // ioredis's Cluster client reports a node's connection errors as 'node error'; a single Redis never emits it.
  redis.on('node error', onConnectionError)
  redis.on('ready', () => (connectionError = ''))
  const describeFailure = (err: unknown) =>
    redis.status === 'ready'
      ? describeError(err)
      : `not connected to redis (${redis.status})${connectionError === '' ? '' : `: ${connectionError}`}`
  const hostInfo = new HostInfoSource({
    read: deps.readHostInfo,
    onError: (err) => logger.warn({ event: 'host_info_failed', err: describeError(err) }, 'cannot read hostname/IP; keeping the last known'),
  })
  // Waited for only before the first beat: the local interface listens meanwhile, so workers' first reports are
  // taken (and counted in that beat) even while Redis is slow to answer or away.
  const redisReady = waitForReady(redis, REDIS_READY_WAIT_MS)
  await hostInfo.start()

  const store = new HeartbeatStore(redis, config.layout, config.staleAfterMs)
  const counts = new NodeCounts({
    workers: new WorkerRegistry(deps.monotonicNow ?? (() => performance.now())),
    logger,
    onChange: () => loop.beatNow(),
  })
  const metrics: AgentMetrics = new AgentMetrics({ counts: () => counts.total(), redisUp: () => loop.redisUp === true, processMetrics: deps.processMetrics })
  const loop = new HeartbeatLoop({
    store: deps.wrapStore ? deps.wrapStore(store) : store,
    intervalMs: config.intervalMs,
    logger,
    describeFailure,
    observer: metrics,
    nextBeat: () => ({ nodeId, instanceId, ...hostInfo.current, counts: counts.forBeat(), agentTimeMs: Math.max(0, Math.round(clock())) }),
  })
  const simulator = config.simulate ? new Simulator({ onChange: (next) => counts.setSimulated(next), random: deps.random }) : undefined
  const processWatcher = config.watchProcesses ? watchProcesses(config, deps, logger, counts) : undefined
  const server = buildLocalServer({
    logger,
    nodeId,
    counts,
    simulating: simulator !== undefined,
    redisUp: () => loop.redisUp === true,
    watchedCounts: () => processWatcher?.current,
    metrics,
    token: config.token,
  })

  try {
    await server.listen({ host: config.listen.host, port: config.listen.port })
  } catch (err) {
    hostInfo.stop()
    redis.disconnect()
    throw new Error(`cannot listen on ${config.listen.host}:${config.listen.port} (AGENT_LISTEN): ${describeError(err)}`)
  }
  const address = server.server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  const url = `http://${host}:${address.port}`
  if (config.token === undefined && !isLoopback(address.address)) {
    logger.warn(
      { event: 'listen_without_token', listen: url },
      `the local interface listens on ${url}, not on loopback, without AGENT_TOKEN: anyone who reaches it can set this node's counts; set AGENT_TOKEN or AGENT_LISTEN=127.0.0.1:${address.port}`,
    )
  }

  await Promise.all([processWatcher?.start(), redisReady])
  await loop.start()
  simulator?.start()
  logger.info({ event: 'started', node_id: nodeId, url, hostname: hostInfo.current.hostname, ip: hostInfo.current.ip }, 'agent started')

  let stopping: Promise<void> | undefined
  // Not waiting on the local server: its clients (a half-sent request) must not keep the node in the totals.
  const shutdown = async () => {
    simulator?.stop()
    await Promise.allSettled([loop.stop(), processWatcher?.stop()])
    const removed = await store.removeNode(nodeId, instanceId)
    logger.info({ event: 'removed', node_id: nodeId, removed }, removed ? 'node removed from the totals' : 'no record of this agent to remove')
  }
  const stop = () => {
    stopping ??= (async () => {
      logger.info({ event: 'stopping' }, 'stopping: no more beats, removing this node from the totals')
      // Closing in parallel with the removal: requests in flight get CLOSE_GRACE_MS, then every connection is closed.
      const serverClosed = server.close().catch((err: unknown) =>
        logger.warn({ event: 'close_failed', err: describeError(err) }, 'error closing the local HTTP interface'),
      )
      let deadline: NodeJS.Timeout | undefined
      const timedOut = new Promise<'timeout'>((resolve) => (deadline = setTimeout(() => resolve('timeout'), SHUTDOWN_DEADLINE_MS)))
      const outcome = await Promise.race([shutdown().catch((err: unknown) => err), timedOut])
      clearTimeout(deadline)
      if (outcome === 'timeout' || outcome instanceof Error) {
        const reason = outcome === 'timeout' ? `took over ${SHUTDOWN_DEADLINE_MS} ms` : describeFailure(outcome)
        logger.warn({ event: 'remove_failed', reason }, `could not remove this node from the totals (${reason}); it leaves them after ${config.staleAfterMs} ms`)
      }
      simulator?.stop()
      void processWatcher?.stop()
      hostInfo.stop()
      await Promise.all([serverClosed, quit(redis)])
      logger.info({ event: 'stopped' }, 'agent stopped')
    })()
    return stopping
  }

  return { nodeId, instanceId, url, loop, counts: () => counts.total(), processWatcher, stop }
}

/** Scans processes once per heartbeat interval, off the beat path; a change of the counts beats at once. */
function watchProcesses(config: AgentConfig, deps: AgentDeps, logger: Logger, counts: NodeCounts): ProcessWatcher {
  const table = new ProcessTable(new ProcessMatcher(config.processRules))
  return new ProcessWatcher({
    scan: deps.scanProcesses ?? (() => table.scan()),
    intervalMs: config.intervalMs,
    onChange: (watched) => counts.setWatched(watched),
    onError: (err) => logger.error({ event: 'process_scan_failed', err: describeError(err) }, 'cannot read the process table; keeping the last watched counts'),
  })
}

async function quit(redis: RedisClient): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([redis.quit().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, 200)))])
  clearTimeout(timer)
  redis.disconnect()
}
