import { Cluster, Redis, type RedisOptions } from 'ioredis'
import { Type } from 'typebox'
import { ConfigError, parseHostPort, redactUrl } from './config.js'

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
  return refuseMissingDatabase(dropConnectionOnTimeout(new Redis(url, { ...FAIL_FAST, retryStrategy: backoff, ...options })))
}

/**
 * ioredis reports a failed SELECT (a database this Redis does not have: `databases` is 16 by default) as an error
 * event and then goes ready on database 0, where an agent would write and an API read beside whatever lives there.
 * Dropping the connection instead keeps the client unready: the process reports Redis unavailable with this
 * reason, and retries with the usual backoff, in case the server's configuration is being fixed.
 */
function refuseMissingDatabase(redis: Redis): Redis {
  redis.on('error', (err: Error) => {
    if (/DB index is out of range/.test(err.message)) redis.stream?.destroy()
  })
  return redis
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

/** REDIS_SENTINELS and friends: set, the primary is found through Redis Sentinel (REDIS_URL then gives user, password, db, TLS). */
export const RedisSentinelEnv = {
  REDIS_SENTINELS: Type.Optional(
    Type.String({
      pattern: '^[^,\\s]+:\\d{1,5}(,[^,\\s]+:\\d{1,5})*$',
      description: 'Redis Sentinels, comma-separated host:port (unset: no Sentinel); the primary is REDIS_SENTINEL_NAME',
    }),
  ),
  REDIS_SENTINEL_NAME: Type.String({
    default: 'mymaster',
    pattern: '^[A-Za-z0-9_.:-]{1,128}$',
    description: 'the name the Sentinels monitor the primary under',
  }),
  REDIS_SENTINEL_PASSWORD: Type.Optional(
    Type.String({ description: "the Sentinels' own password, when they require one", secret: true }),
  ),
}

export interface SentinelConfig {
  nodes: { host: string; port: number }[]
  name: string
  password?: string
}

export interface RedisConnectionConfig {
  /** redis:// or rediss:// URL: the server itself, or with clusterNodes/sentinel only its user, password and TLS. */
  url: string
  /** Seed nodes of a Redis Cluster; absent or empty: a single Redis at url (or the primary Sentinel names). */
  clusterNodes?: { host: string; port: number }[] | undefined
  /** Redis Sentinels that name the primary; never together with clusterNodes. */
  sentinel?: SentinelConfig | undefined
}

/**
 * The database a Redis URL selects, as ioredis reads it: the path, else ?db=, else 0. A ConfigError naming REDIS_URL
 * (never showing it: it may hold a password) when it is not a database number.
 */
export function redisDatabaseOf(url: URL): number {
  const path = /^\/?(\d{0,9})$/.exec(url.pathname)
  // The path wins over the query, and of repeated ?db= the last one, as ioredis reads them.
  const text = path?.[1] || url.searchParams.getAll('db').at(-1) || '0'
  if (!path || !/^\d{1,9}$/.test(text)) {
    throw new ConfigError('REDIS_URL=(value hidden) is invalid: its database (the path, or ?db=) must be a number, e.g. redis://host:6379/0')
  }
  return Number(text)
}

/**
 * REDIS_URL checked as ioredis will read it, so that a bad one stops start-up naming the variable: ioredis itself
 * throws a bare "URI malformed" or "Invalid URL" later (with the value, password and all, in the stack trace), and
 * runs on database 0 when the path is not a number.
 */
export function checkRedisUrl(url: string, topology: Pick<RedisConnectionConfig, 'clusterNodes'>): void {
  const invalid = (why: string) => new ConfigError(`REDIS_URL=(value hidden) is invalid: ${why}`)
  let parsed: URL
  try {
    parsed = new URL(url)
  } catch {
    throw invalid('not a parseable URL, e.g. redis://:password@host:6379/0')
  }
  // ioredis ends the URL at a '#': the rest (often the remainder of a password) would be dropped in silence.
  if (url.includes('#')) throw invalid("it holds a '#', where the URL ends for ioredis: write a # in a password as %23")
  try {
    decodeURIComponent(parsed.username)
    decodeURIComponent(parsed.password)
  } catch {
    throw invalid('its user or password holds a malformed %-escape (write a % as %25)')
  }
  const db = redisDatabaseOf(parsed)
  if (db !== 0 && topology.clusterNodes?.length) throw invalid(`it selects database ${db}, and Redis Cluster has only database 0`)
}

/**
 * What REDIS_URL, REDIS_CLUSTER_NODES and the REDIS_SENTINEL* variables select; a ConfigError naming the variable
 * when one is bad, or when both a cluster and Sentinels are set.
 */
export function redisConnectionFromEnv(vars: Parameters<typeof redisTopologyFromEnv>[0] & { REDIS_URL: string }): RedisConnectionConfig {
  const topology = redisTopologyFromEnv(vars)
  checkRedisUrl(vars.REDIS_URL, topology)
  return { url: vars.REDIS_URL, ...topology }
}

/** What REDIS_CLUSTER_NODES and the REDIS_SENTINEL* variables select; a ConfigError when both are set. */
export function redisTopologyFromEnv(vars: {
  REDIS_CLUSTER_NODES?: string | undefined
  REDIS_SENTINELS?: string | undefined
  REDIS_SENTINEL_NAME: string
  REDIS_SENTINEL_PASSWORD?: string | undefined
}): Pick<RedisConnectionConfig, 'clusterNodes' | 'sentinel'> {
  if (vars.REDIS_CLUSTER_NODES && vars.REDIS_SENTINELS) {
    throw new ConfigError('REDIS_CLUSTER_NODES and REDIS_SENTINELS are both set: use one (Redis Cluster or Sentinel)')
  }
  if (vars.REDIS_CLUSTER_NODES) return { clusterNodes: parseClusterNodes(vars.REDIS_CLUSTER_NODES) }
  if (!vars.REDIS_SENTINELS) return {}
  let nodes
  try {
    nodes = vars.REDIS_SENTINELS.split(',').map((entry) => parseHostPort(entry.trim()))
  } catch (err) {
    throw new ConfigError(`REDIS_SENTINELS=${JSON.stringify(vars.REDIS_SENTINELS)} is invalid: ${(err as Error).message}`)
  }
  const password = vars.REDIS_SENTINEL_PASSWORD
  return { sentinel: { nodes, name: vars.REDIS_SENTINEL_NAME, ...(password ? { password } : {}) } }
}

/** Where a connection goes, for log lines: never a password. */
export function describeRedisTarget(config: RedisConnectionConfig): string {
  const list = (nodes: { host: string; port: number }[]) => nodes.map(({ host, port }) => `${host}:${port}`).join(',')
  if (config.clusterNodes?.length) return `Redis Cluster at ${list(config.clusterNodes)}`
  if (config.sentinel) return `Redis primary "${config.sentinel.name}" via Sentinels at ${list(config.sentinel.nodes)}`
  return `Redis at ${redactUrl(config.url)}`
}

/** Parses REDIS_CLUSTER_NODES for every process that reads it; a bad value throws a ConfigError naming the variable. */
export function parseClusterNodes(text: string): { host: string; port: number }[] {
  try {
    return text.split(',').map((entry) => parseHostPort(entry.trim()))
  } catch (err) {
    throw new ConfigError(`REDIS_CLUSTER_NODES=${JSON.stringify(text)} is invalid: ${(err as Error).message}`)
  }
}

/**
 * The client both processes use: a single Redis, or ioredis's Cluster client when cluster nodes are given, with the
 * same fail-fast behaviour either way. Every store key carries a hash tag, so each script runs in one slot.
 */
export function createRedisConnection(config: RedisConnectionConfig, options: RedisOptions = {}): Redis | Cluster {
  if (config.sentinel) {
    const { nodes, name, password } = config.sentinel
    // The URL's host is ignored: Sentinel names the primary, and ioredis asks again on every reconnect, so a
    // failover is followed within a reconnect. Its user, password, db and TLS still apply to the primary.
    const tls = config.url.startsWith('rediss:')
    return createRedisClient(config.url, {
      sentinels: nodes,
      name,
      ...(password ? { sentinelPassword: password } : {}),
      ...(tls ? { enableTLSForSentinelMode: true } : {}),
      sentinelRetryStrategy: backoff,
      ...options,
    })
  }
  if (!config.clusterNodes || config.clusterNodes.length === 0) return createRedisClient(config.url, options)
  const url = new URL(config.url)
  // As ioredis reads a single Redis's URL: the user info first, else ?username= / ?password= (a URL that works
  // against one Redis must not fail with NOAUTH on a cluster).
  const username = url.username ? decodeURIComponent(url.username) : url.searchParams.get('username')
  const password = url.password ? decodeURIComponent(url.password) : url.searchParams.get('password')
  const credentials: RedisOptions = {
    ...(username ? { username } : {}),
    ...(password ? { password } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  }
  return new Cluster(config.clusterNodes, {
    enableOfflineQueue: false,
    enableReadyCheck: true,
    clusterRetryStrategy: backoff,
    // A moved slot or a failover is followed at once, but never queued for long: callers retry on their next tick.
    // No periodic slotsRefreshInterval is needed: a command that finds its master gone re-reads CLUSTER SLOTS, so the
    // promoted replica serves from the first beat or read after its promotion (test/e2e/cluster-mode.test.ts).
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
