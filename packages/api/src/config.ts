import { createHash } from 'node:crypto'
import { Type, type Static } from 'typebox'
import { ConfigError, LogLevelEnv, type LogLevel, describeRedisTarget, readEnv, redactUrl, RedisClusterEnv, RedisSentinelEnv, redisConnectionFromEnv, StoreEnv, type Env, type SentinelConfig, type StoreLayout } from '@tornado/shared'

/** Every variable the API reads: the property names are the variable names. */
export const ApiEnv = Type.Object({
  ...StoreEnv,
  ...RedisClusterEnv,
  ...RedisSentinelEnv,
  TORNADO_API_KEYS: Type.String({
    // At least one entry that is not empty once trimmed.
    pattern: '[^,\\s]',
    description: 'comma-separated API keys accepted in the x-api-key header (at least one)',
    secret: true,
  }),
  TOTALS_CACHE_MS: Type.Integer({
    default: 250,
    minimum: 0,
    maximum: 5_000,
    description: 'milliseconds one Redis read of the totals may answer later requests, 0 to 5000 (0: no reuse)',
  }),
  ONLINE_WITHIN_MS: Type.Integer({
    default: 5_000,
    minimum: 100,
    maximum: 3_600_000,
    description: 'milliseconds: a node whose last heartbeat is younger is shown online, older ones stale; 100 to 3600000, at most STALE_AFTER_MS (the default yields to it)',
  }),
  AUTH_FAILURE_LIMIT: Type.Integer({
    default: 20,
    minimum: 1,
    maximum: 100_000,
    description: 'failed authentications one client address may make per minute before it gets 429s, 1 to 100000',
  }),
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535, description: 'a TCP port from 0 to 65535 (0: any free port)' }),
  HOST: Type.String({ default: '0.0.0.0', minLength: 1, description: 'the address to listen on, e.g. 0.0.0.0 or 127.0.0.1' }),
  METRICS_ENABLED: Type.Boolean({
    default: true,
    description: 'serve GET /metrics (Prometheus text, no API key needed): 1/true/on or 0/false/off',
  }),
  ...LogLevelEnv,
})
export type ApiEnv = Static<typeof ApiEnv>

export interface ApiConfig {
  redisUrl: string
  /** REDIS_CLUSTER_NODES: set, the API uses Redis Cluster through these seed nodes. */
  redisClusterNodes?: { host: string; port: number }[]
  /** Sentinels naming the primary (REDIS_SENTINELS); never with redisClusterNodes. */
  redisSentinel?: SentinelConfig
  layout: StoreLayout
  staleAfterMs: number
  /** How long one read of the totals may be reused; concurrent requests share one read in any case. */
  totalsCacheMs: number
  /** The dashboard shows a node `online` while its last heartbeat is younger than this, `stale` after. */
  onlineWithinMs: number
  /** SHA-256 digests of the accepted keys: the keys themselves are not kept, so no log or dump can show them. */
  apiKeyDigests: Buffer[]
  /** Failed authentications per client address per minute before 429s. */
  authFailureLimit: number
  port: number
  host: string
  logLevel: LogLevel
  /** Whether GET /metrics is served (the counting goes on regardless: it is cheap). */
  metricsEnabled: boolean
}

export const sha256 = (text: string): Buffer => createHash('sha256').update(text, 'utf8').digest()

/** Reads and validates the API's configuration once; throws ConfigError naming the bad variable. */
export function loadApiConfig(env: Env): ApiConfig {
  const vars = readEnv(ApiEnv, env)
  // The default yields to a short STALE_AFTER_MS; a value set on purpose that can never apply is a mistake.
  const onlineSet = env.ONLINE_WITHIN_MS !== undefined && env.ONLINE_WITHIN_MS !== ''
  if (onlineSet && vars.ONLINE_WITHIN_MS > vars.STALE_AFTER_MS) {
    throw new ConfigError(
      `ONLINE_WITHIN_MS=${JSON.stringify(env.ONLINE_WITHIN_MS)} is invalid: at most STALE_AFTER_MS (${vars.STALE_AFTER_MS}), since a node older than that is gone`,
    )
  }
  const keys = new Set(vars.TORNADO_API_KEYS.split(',').map((key) => key.trim()).filter((key) => key !== ''))
  const topology = redisConnectionFromEnv(vars)
  return {
    redisUrl: vars.REDIS_URL,
    ...(topology.clusterNodes ? { redisClusterNodes: topology.clusterNodes } : {}),
    ...(topology.sentinel ? { redisSentinel: topology.sentinel } : {}),
    layout: { prefix: vars.TORNADO_PREFIX, shards: vars.TORNADO_SHARDS },
    staleAfterMs: vars.STALE_AFTER_MS,
    totalsCacheMs: vars.TOTALS_CACHE_MS,
    onlineWithinMs: Math.min(vars.ONLINE_WITHIN_MS, vars.STALE_AFTER_MS),
    apiKeyDigests: [...keys].map(sha256),
    authFailureLimit: vars.AUTH_FAILURE_LIMIT,
    port: vars.PORT,
    host: vars.HOST,
    logLevel: vars.LOG_LEVEL,
    metricsEnabled: vars.METRICS_ENABLED,
  }
}

/** The configuration as it may be logged: the Redis password redacted, the keys only counted. */
export function describeConfig(config: ApiConfig) {
  return {
    redisUrl: redactUrl(config.redisUrl),
    ...(config.redisClusterNodes || config.redisSentinel
      ? { redis: describeRedisTarget({ url: config.redisUrl, clusterNodes: config.redisClusterNodes, sentinel: config.redisSentinel }) }
      : {}),
    prefix: config.layout.prefix,
    shards: config.layout.shards,
    staleAfterMs: config.staleAfterMs,
    totalsCacheMs: config.totalsCacheMs,
    onlineWithinMs: config.onlineWithinMs,
    apiKeys: config.apiKeyDigests.length,
    authFailureLimit: config.authFailureLimit,
    host: config.host,
    port: config.port,
    logLevel: config.logLevel,
    metricsEnabled: config.metricsEnabled,
  }
}
