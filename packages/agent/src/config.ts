import { Type, type Static } from 'typebox'
import { ConfigError, LogLevelEnv, type LogLevel, NODE_ID_PATTERN, RedisClusterEnv, RedisSentinelEnv, redisConnectionFromEnv, StoreEnv, parseHostPort, readEnv, type Env, type SentinelConfig } from '@tornado/shared'
import { DEFAULT_PROCESS_RULES, loadProcessRules, type ProcessRules } from './processes/process-rules.js'

export const MIN_TOKEN_LENGTH = 16
export const MAX_TOKEN_LENGTH = 256

/** Every variable the agent reads; names are the variable names, defaults and descriptions feed `--help`. */
export const AgentEnv = Type.Object({
  ...StoreEnv,
  ...RedisClusterEnv,
  ...RedisSentinelEnv,
  TORNADO_NODE_ID: Type.Optional(
    Type.String({
      pattern: NODE_ID_PATTERN,
      description: 'letters, digits and . _ : @ - (up to 128, starting with a letter or digit); default: the hostname',
    }),
  ),
  HEARTBEAT_INTERVAL_MS: Type.Integer({
    default: 1000,
    minimum: 100,
    maximum: 60_000,
    description: 'milliseconds between heartbeats, an integer from 100 to 60000',
  }),
  AGENT_LISTEN: Type.String({
    default: '127.0.0.1:7071',
    description: 'host:port of the local HTTP interface (PUT /counts), e.g. 127.0.0.1:7071',
  }),
  AGENT_TOKEN: Type.Optional(
    Type.String({
      minLength: MIN_TOKEN_LENGTH,
      maxLength: MAX_TOKEN_LENGTH,
      // Printable ASCII without spaces: what an HTTP header carries unchanged (no trimming, no encoding).
      pattern: '^[\\x21-\\x7E]+$',
      description: `a secret of ${MIN_TOKEN_LENGTH} to ${MAX_TOKEN_LENGTH} printable ASCII characters, no spaces (e.g. openssl rand -hex 32); when set, every local route but GET /health needs "Authorization: Bearer <token>"`,
      secret: true,
    }),
  ),
  TORNADO_SIMULATE: Type.Union([Type.Literal('0'), Type.Literal('1'), Type.Literal('false'), Type.Literal('true')], {
    default: '0',
    description: '1 or true: simulate a workload instead of taking PUT /counts (same as --simulate); 0 or false: off',
  }),
  TORNADO_WATCH_PROCESSES: Type.Union([Type.Literal('0'), Type.Literal('1'), Type.Literal('false'), Type.Literal('true')], {
    default: '0',
    description: '1 or true: count running processes by executable name (same as --watch-processes); 0 or false: off',
  }),
  TORNADO_PROCESS_RULES: Type.Optional(
    Type.String({
      description: 'path of a JSON file replacing the default process rules, e.g. {"muxing":["ffmpeg"],"downloading":["curl"]}',
    }),
  ),
  ...LogLevelEnv,
})
export type AgentEnv = Static<typeof AgentEnv>

export interface AgentConfig {
  redisUrl: string
  /** REDIS_CLUSTER_NODES: set, the agent uses Redis Cluster through these seed nodes. */
  redisClusterNodes?: { host: string; port: number }[]
  /** Sentinels naming the primary (REDIS_SENTINELS); never with redisClusterNodes. */
  redisSentinel?: SentinelConfig
  layout: { prefix: string; shards: number }
  staleAfterMs: number
  nodeId: string
  intervalMs: number
  listen: { host: string; port: number }
  /** AGENT_TOKEN: when set, the local interface's routes (all but /health) need it. Never logged. */
  token: string | undefined
  simulate: boolean
  /** Count running processes by executable name with `processRules`. */
  watchProcesses: boolean
  processRules: ProcessRules
  /** Where processRules came from; undefined: the built-in defaults. */
  processRulesFile: string | undefined
  logLevel: LogLevel
}

export interface ConfigOverrides {
  /** `--simulate` on the command line. */
  simulate?: boolean
  /** `--watch-processes` on the command line. */
  watchProcesses?: boolean
  /** Reads TORNADO_PROCESS_RULES; tests may replace it. */
  readFile?: (path: string) => string
  /** Used for the default node id; the caller passes os.hostname(). */
  hostname: string
}

/** Reads and validates the agent's configuration once, at start. Throws ConfigError naming the bad variable. */
export function loadConfig(env: Env, overrides: ConfigOverrides): AgentConfig {
  const vars = readEnv(AgentEnv, env)
  let listen: AgentConfig['listen']
  try {
    listen = parseHostPort(vars.AGENT_LISTEN)
  } catch (err) {
    throw new ConfigError(`AGENT_LISTEN=${JSON.stringify(vars.AGENT_LISTEN)} is invalid: ${(err as Error).message}`)
  }
  const on = (value: string) => value === '1' || value === 'true'
  const processRulesFile = vars.TORNADO_PROCESS_RULES
  // Checked even when watching is off, so a bad file is found now rather than the day watching is turned on.
  const processRules = processRulesFile === undefined ? DEFAULT_PROCESS_RULES : loadProcessRules(processRulesFile, overrides.readFile)
  const topology = redisConnectionFromEnv(vars)
  return {
    redisUrl: topology.url,
    ...(topology.clusterNodes ? { redisClusterNodes: topology.clusterNodes } : {}),
    ...(topology.sentinel ? { redisSentinel: topology.sentinel } : {}),
    layout: { prefix: vars.TORNADO_PREFIX, shards: vars.TORNADO_SHARDS },
    staleAfterMs: vars.STALE_AFTER_MS,
    nodeId: vars.TORNADO_NODE_ID ?? nodeIdFromHostname(overrides.hostname),
    intervalMs: vars.HEARTBEAT_INTERVAL_MS,
    listen,
    token: vars.AGENT_TOKEN,
    simulate: overrides.simulate === true || on(vars.TORNADO_SIMULATE),
    watchProcesses: overrides.watchProcesses === true || on(vars.TORNADO_WATCH_PROCESSES),
    processRules,
    processRulesFile,
    logLevel: vars.LOG_LEVEL as LogLevel,
  }
}

/** A hostname made to fit NODE_ID_PATTERN: other characters become '-', at most 128 characters. */
export function nodeIdFromHostname(hostname: string): string {
  const id = hostname
    .replace(/[^A-Za-z0-9._:@-]/g, '-')
    .replace(/^[^A-Za-z0-9]+/, '')
    .slice(0, 128)
  return id === '' ? 'node' : id
}
