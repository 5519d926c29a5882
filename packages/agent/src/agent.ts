import { randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { HeartbeatStore, ZERO_COUNTS, createRedisClient, redactUrl, waitForReady, type JobCounts } from '@tornado/shared'
import { pino, type Logger } from 'pino'
import type { AgentConfig } from './config.js'
import { HeartbeatLoop, describeError, type BeatWriter } from './heartbeat-loop.js'
import { HostInfoSource, type HostInfo } from './host-info.js'
import { buildLocalServer } from './local-server.js'
import { Simulator } from './simulator.js'

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
}

export interface Agent {
  nodeId: string
  instanceId: string
  /** The local HTTP interface, e.g. http://127.0.0.1:7071. */
  url: string
  loop: HeartbeatLoop
  counts(): JobCounts
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
      prefix: config.layout.prefix,
      shards: config.layout.shards,
      stale_after_ms: config.staleAfterMs,
      interval_ms: config.intervalMs,
      listen: `${config.listen.host}:${config.listen.port}`,
      simulate: config.simulate,
    },
    'starting tornado agent',
  )

  const redis = createRedisClient(config.redisUrl)
  // Outages are logged once by the heartbeat loop, not per reconnect attempt; it reports the last connection error.
  let connectionError = ''
  redis.on('error', (err: Error) => (connectionError = describeError(err)))
  redis.on('ready', () => (connectionError = ''))
  const describeFailure = (err: unknown) =>
    redis.status === 'ready'
      ? describeError(err)
      : `not connected to redis (${redis.status})${connectionError === '' ? '' : `: ${connectionError}`}`
  const hostInfo = new HostInfoSource({
    read: deps.readHostInfo,
    onError: (err) => logger.warn({ event: 'host_info_failed', err: describeError(err) }, 'cannot read hostname/IP; keeping the last known'),
  })
  await Promise.all([hostInfo.start(), waitForReady(redis, REDIS_READY_WAIT_MS)])

  const store = new HeartbeatStore(redis, config.layout, config.staleAfterMs)
  let counts: JobCounts = { ...ZERO_COUNTS }
  const loop = new HeartbeatLoop({
    store: deps.wrapStore ? deps.wrapStore(store) : store,
    intervalMs: config.intervalMs,
    logger,
    describeFailure,
    nextBeat: () => ({ nodeId, instanceId, ...hostInfo.current, counts, agentTimeMs: Math.max(0, Math.round(clock())) }),
  })
  const setCounts = (next: JobCounts) => {
    counts = next
    loop.beatNow()
  }
  const simulator = config.simulate ? new Simulator({ onChange: setCounts, random: deps.random }) : undefined
  const server = buildLocalServer({
    logger,
    nodeId,
    getCounts: () => counts,
    setCounts,
    simulating: simulator !== undefined,
    redisUp: () => loop.redisUp === true,
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

  await loop.start()
  simulator?.start()
  logger.info({ event: 'started', node_id: nodeId, url, hostname: hostInfo.current.hostname, ip: hostInfo.current.ip }, 'agent started')

  let stopping: Promise<void> | undefined
  const shutdown = async () => {
    simulator?.stop()
    await Promise.allSettled([loop.stop(), server.close()])
    const removed = await store.removeNode(nodeId, instanceId)
    logger.info({ event: 'removed', node_id: nodeId, removed }, removed ? 'node removed from the totals' : 'no record of this agent to remove')
  }
  const stop = () => {
    stopping ??= (async () => {
      logger.info({ event: 'stopping' }, 'stopping: no more beats, removing this node from the totals')
      let deadline: NodeJS.Timeout | undefined
      const timedOut = new Promise<'timeout'>((resolve) => (deadline = setTimeout(() => resolve('timeout'), SHUTDOWN_DEADLINE_MS)))
      const outcome = await Promise.race([shutdown().catch((err: unknown) => err), timedOut])
      clearTimeout(deadline)
      if (outcome === 'timeout' || outcome instanceof Error) {
        const reason = outcome === 'timeout' ? `took over ${SHUTDOWN_DEADLINE_MS} ms` : describeFailure(outcome)
        logger.warn({ event: 'remove_failed', reason }, `could not remove this node from the totals (${reason}); it leaves them after ${config.staleAfterMs} ms`)
      }
      simulator?.stop()
      hostInfo.stop()
      await quit(redis)
      logger.info({ event: 'stopped' }, 'agent stopped')
    })()
    return stopping
  }

  return { nodeId, instanceId, url, loop, counts: () => counts, stop }
}

async function quit(redis: ReturnType<typeof createRedisClient>): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([redis.quit().catch(() => {}), new Promise((resolve) => (timer = setTimeout(resolve, 200)))])
  clearTimeout(timer)
  redis.disconnect()
}
