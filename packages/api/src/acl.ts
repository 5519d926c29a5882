import { shardKeys, StoreEnv } from '@tornado/shared'
import { apiKeyRedisKeys } from './api-keys.js'

/**
 * The least-privilege Redis ACL users, one per role, built from the same key builders the stores use so the
 * patterns cannot drift from the layout. Each command is granted only on the keys it is used on (ACL selectors,
 * Redis 7.0+). Redis checks every call a script makes against the caller's rules, so a role holds exactly the
 * commands its scripts call, and can run those directly too: see README "Redis ACL users" for what that means.
 *
 *   agent  runs the beat and remove scripts on the heartbeat keys; nothing of the API keys, nothing outside the prefix
 *   api    runs the totals and list scripts (which prune); reads the API key digests; cannot create a record,
 *          add a node or touch an API key
 *   admin  `tornado-api keys`: the API keys only
 */
export type AclRole = 'agent' | 'api' | 'admin'
export const ACL_ROLES: readonly AclRole[] = ['agent', 'api', 'admin']

export interface AclOptions {
  /** REDIS_URL names a database other than 0: ioredis then sends SELECT on every connect. */
  select?: boolean
  /** Redis 7.2 and later: ioredis also sends CLIENT SETINFO (Redis 7.0 has no such command and refuses the rule). */
  clientSetinfo?: boolean
  /** REDIS_CLUSTER_NODES is set: agent and API reach Redis through ioredis's Cluster client. */
  cluster?: boolean
}

/** Commands on keys matching patterns; patterns carry their permission (`~` read-write, `%R~` read-only). */
export interface AclGrant {
  commands: string[]
  keys: string[]
}

export interface AclUser {
  role: AclRole
  name: string
  /** The user's own rules; each selector is allowed on its own, so a command runs only on its selector's keys. */
  root: AclGrant
  selectors: AclGrant[]
}

/** What ioredis 6 sends on connect (HELLO 3 AUTH ...; INFO for the ready check) besides a connection name. */
const CONNECT = ['hello', 'info']
/**
 * ioredis's Cluster client: CLUSTER SLOTS maps the slots, CLUSTER INFO is its ready check, and it names its
 * slot-refresh connection (CLIENT SETNAME). Not for admin: `tornado-api keys` connects to one node.
 */
const CLUSTER = ['cluster|slots', 'cluster|info', 'client|setname']
/** Scripts run by EVALSHA; EVAL when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH). TIME: the scripts' clock. */
const SCRIPTS = ['evalsha', 'eval', 'time']

/** Shard numbers go up to TORNADO_SHARDS' maximum - 1; one pattern per digit count keeps `{p:1}` from matching `{p:1x:0}`. */
const SHARD_DIGITS = String(((StoreEnv.TORNADO_SHARDS as { maximum?: number }).maximum ?? 1024) - 1).length

const escapeGlob = (text: string) => text.replace(/[*?[\]\\]/g, '\\$&')

/** Key patterns of every heartbeat key of the prefix, by kind. Never `{<prefix>:keys}`: its tag is not a number. */
export function heartbeatKeyPatterns(prefix: string) {
  const shards = Array.from({ length: SHARD_DIGITS }, (_, i) => shardKeys({ prefix: escapeGlob(prefix) }, '[0-9]'.repeat(i + 1)))
  return {
    nodes: shards.map((keys) => keys.nodes),
    records: shards.map((keys) => `${keys.nodePrefix}*`),
    totals: shards.map((keys) => keys.totals),
  }
}

export function apiKeyPatterns(prefix: string) {
  const keys = apiKeyRedisKeys(escapeGlob(prefix))
  return { byDigest: keys.byDigest, records: keys.record('*') }
}

const rw = (patterns: string[]) => patterns.map((pattern) => `~${pattern}`)

export function aclUser(role: AclRole, prefix: string, options: AclOptions = {}): AclUser {
  const connect = [...CONNECT, ...(options.select ? ['select'] : []), ...(options.clientSetinfo ? ['client|setinfo'] : [])]
  const clusterConnect = options.cluster ? [...connect, ...CLUSTER] : connect
  const name = `${prefix}-${role}`
  const hb = heartbeatKeyPatterns(prefix)
  const allHeartbeat = rw([...hb.nodes, ...hb.records, ...hb.totals])
  if (role === 'agent') {
    return {
      role,
      name,
      // EVALSHA's KEYS need read and write on each key it is given.
      root: { commands: [...clusterConnect, ...SCRIPTS], keys: allHeartbeat },
      selectors: [
        { commands: ['zadd', 'zscore', 'zrem', 'zrange', 'zrangebyscore', 'zcard', 'type', 'del'], keys: rw(hb.nodes) },
        { commands: ['get', 'set', 'del'], keys: rw(hb.records) },
        { commands: ['hmget', 'hincrby', 'hset', 'del', 'exists'], keys: rw(hb.totals) },
      ],
    }
  }
  if (role === 'api') {
    const apiKeys = apiKeyPatterns(prefix)
    return {
      role,
      name,
      // PING: GET /ready. No ZADD, no SET: it prunes and recounts, it never adds a node or writes a record.
      root: { commands: [...clusterConnect, 'ping', ...SCRIPTS], keys: allHeartbeat },
      selectors: [
        { commands: ['zrem', 'zrange', 'zrangebyscore', 'zcard', 'zcount', 'type', 'del'], keys: rw(hb.nodes) },
        { commands: ['get', 'del'], keys: rw(hb.records) },
        { commands: ['hmget', 'hincrby', 'hset', 'del', 'exists'], keys: rw(hb.totals) },
        { commands: ['hkeys'], keys: [`%R~${apiKeys.byDigest}`] },
      ],
    }
  }
  const apiKeys = apiKeyPatterns(prefix)
  return {
    role,
    name,
    // CLIENT SETNAME: the keys CLI names its connection. MULTI/EXEC: a create or revoke is one transaction.
    // With REDIS_CLUSTER_NODES the keys CLI uses the Cluster client too, so it needs the cluster commands.
    root: {
      commands: [...new Set([...clusterConnect, 'client|setname', 'multi', 'exec', 'hset', 'hget', 'hgetall', 'hvals', 'hdel', 'del'])],
      keys: rw([apiKeys.byDigest, apiKeys.records]),
    },
    selectors: [],
  }
}

const grantRules = (grant: AclGrant) => [...grant.commands.map((command) => `+${command}`), ...grant.keys]

/** The arguments of ACL SETUSER after the user name: `reset` first, so applying them again gives the same user. */
export function aclRules(user: AclUser, password: string): string[] {
  return [
    'reset',
    'on',
    `>${password}`,
    ...grantRules(user.root),
    ...user.selectors.map((selector) => `(${grantRules(selector).join(' ')})`),
  ]
}

/** One ACL SETUSER line for redis-cli. The tokens hold no spaces or quotes (TORNADO_PREFIX allows none). */
export function aclSetUserLine(user: AclUser, password: string): string {
  return ['ACL', 'SETUSER', user.name, ...aclRules(user, password)].join(' ')
}
