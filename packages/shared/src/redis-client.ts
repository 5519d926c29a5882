import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { Type } from 'typebox'
import { ConfigError, parseHostPort } from './config.js'

/** How long any Redis command may take before it fails: a paused or unreachable Redis never hangs a caller. */
export const REDIS_COMMAND_TIMEOUT_MS = 1_000

/**
 * The connection settings both processes use. Commands fail fast instead of queueing while Redis is away
 * (no offline queue, no per-command retries: the agent's next beat and the dashboard's next poll are the retry),
 * and reconnects back off to at most 500 ms, so a returning Redis is used again within about a second.
 */
const FAIL_FAST: RedisOptions = {
  enableOfflineQueue: false,
  maxRetriesPerRequest: 0,
  commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
  connectTimeout: REDIS_COMMAND_TIMEOUT_MS,
  autoResendUnfulfilledCommands: false,
}
const backoff = (attempt: number) => Math.min(50 * 2 ** attempt, 500) * (0.75 + Math.random() * 0.5)

export function createRedisClient(url: string, options: RedisOptions = {}): Redis {
  return dropConnectionOnTimeout(new Redis(url, { ...FAIL_FAST, retryStrategy: backoff, ...options }))
}

/** The rejection ioredis gives a command that outlived commandTimeout. */
const COMMAND_TIMED_OUT = 'Command timed out'

/**
 * A command that times out has already been written: a paused or stuck Redis still runs it when it resumes, and
 * every command written behind it on that connection too, so a 5 s pause used to end in a burst of stale beats and
 * reads (measured: 5 to 6 per agent within 200 ms of SIGCONT). So the first timeout drops the connection and ioredis
 * reconnects; until it is ready, commands fail at once (no offline queue). Redis still runs what it already
 * received on the dropped connection (neither a FIN nor an RST takes back bytes the kernel has accepted for it):
 * at most the commands that were in flight at the timeout, for the agent one beat.
 */
export function dropConnectionOnTimeout(redis: Redis): Redis {
  const send = redis.sendCommand.bind(redis)
  redis.sendCommand = (command, stream) => {
    const socket = redis.stream
    const reply = send(command, stream)
    // The caller keeps handling the command's promise as before; this only watches it.
    command.promise.catch((err: unknown) => {
      // Only the connection the command went out on, and only while it still looks healthy (status "ready").
      // destroy(), not disconnect(true): that ends the socket politely and waits for a FIN a stopped Redis never sends.
      if (err instanceof Error && err.message === COMMAND_TIMED_OUT && redis.stream === socket && redis.status === 'ready') {
        socket.destroy()
      }
    })
    return reply
  }
  return redis
}

/** REDIS_CLUSTER_NODES, for a process's env schema: set, it selects Redis Cluster (REDIS_URL then gives only credentials and TLS). */
export const RedisClusterEnv = {
  REDIS_CLUSTER_NODES: Type.Optional(
    Type.String({
      pattern: '^[^,\\s]+:\\d{1,5}(,[^,\\s]+:\\d{1,5})*$',
      description: 'Redis Cluster seed nodes, comma-separated host:port (unset: a single Redis at REDIS_URL)',
    }),
  ),
}

export interface RedisConnectionConfig {
  /** redis:// or rediss:// URL: the server itself, or with clusterNodes only its user, password and TLS. */
  url: string
  /** Seed nodes of a Redis Cluster; absent or empty: a single Redis (or a Sentinel-less primary) at url. */
  clusterNodes?: { host: string; port: number }[]
}

export function parseClusterNodes(text: string): { host: string; port: number }[] {
  const nodes = text.split(',').map((entry) => parseHostPort(entry.trim()))
  if (nodes.length === 0) throw new ConfigError('REDIS_CLUSTER_NODES: expected host:port,host:port,...')
  return nodes
}

/**
 * The client both processes use: a single Redis, or ioredis's Cluster client when cluster nodes are given, with the
 * same fail-fast behaviour either way. Every store key carries a hash tag, so each script runs in one slot.
 */
export function createRedisConnection(config: RedisConnectionConfig, options: RedisOptions = {}): Redis | Cluster {
  if (!config.clusterNodes || config.clusterNodes.length === 0) return createRedisClient(config.url, options)
  const url = new URL(config.url)
  const credentials: RedisOptions = {
    ...(url.username ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password ? { password: decodeURIComponent(url.password) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  }
  return new Cluster(config.clusterNodes, {
    enableOfflineQueue: false,
    enableReadyCheck: true,
    clusterRetryStrategy: backoff,
    // A moved slot or a failover is followed at once, but never queued for long: callers retry on their next tick.
    retryDelayOnFailover: 100,
    retryDelayOnClusterDown: 100,
    maxRedirections: 4,
    slotsRefreshTimeout: REDIS_COMMAND_TIMEOUT_MS,
    redisOptions: { ...FAIL_FAST, ...credentials, ...options },
  })
}

/** Resolves once the client is ready, or false after timeoutMs; it never rejects. */
export async function waitForReady(redis: { status: string; once(event: 'ready', listener: () => void): unknown; off(event: 'ready', listener: () => void): unknown }, timeoutMs: number): Promise<boolean> {
  if (redis.status === 'ready') return true
  return new Promise((resolve) => {
    const onReady = () => {
      clearTimeout(timer)
      resolve(true)
    }
    const timer = setTimeout(() => {
      redis.off('ready', onReady)
      resolve(false)
    }, timeoutMs)
    redis.once('ready', onReady)
  })
}
