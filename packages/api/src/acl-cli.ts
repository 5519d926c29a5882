import { parseArgs } from 'node:util'
import { Type } from 'typebox'
import { checkRedisUrl, ConfigError, readEnv, redisDatabaseOf, RedisClusterEnv, StoreEnv, type Env } from '@tornado/shared'
import { ACL_ROLES, aclSetUserLine, aclUser, type AclOptions } from './acl.js'
import type { KeysIo } from './keys-cli.js'

/**
 * TORNADO_PREFIX names the keys; REDIS_URL is read only for its database number (a SELECT to allow) and
 * REDIS_CLUSTER_NODES only for whether it is set (the Cluster client's commands). Nothing connects.
 */
export const AclEnv = Type.Object({ REDIS_URL: StoreEnv.REDIS_URL, TORNADO_PREFIX: StoreEnv.TORNADO_PREFIX, ...RedisClusterEnv })

export const ACL_USAGE = [
  'Usage: tornado-api acl [--client-setinfo]',
  'Prints one ACL SETUSER line per Redis user of TORNADO_PREFIX (Redis 7.0 or later): <prefix>-agent for every',
  'tornado-agent, <prefix>-api for tornado-api, <prefix>-admin for tornado-api keys. Replace each <...-password>,',
  'run the lines with redis-cli (on every node of a Redis Cluster, replicas too), then give each process its user:',
  'REDIS_URL=redis://<prefix>-agent:PASSWORD@host:6379. Reads TORNADO_PREFIX, REDIS_URL (only its database: one',
  'other than 0 adds SELECT) and REDIS_CLUSTER_NODES (set: adds the Cluster client\'s commands); connects to nothing.',
  '  --client-setinfo   also allow CLIENT SETINFO, which ioredis sends to Redis 7.2 and later (Redis 7.0 has no such',
  '                     command and refuses the rule)',
  'See README "Redis ACL users".',
  '',
].join('\n')

/** `tornado-api acl`: returns the exit code. */
export function runAclCommand(argv: string[], env: Env, io: KeysIo): number {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { 'client-setinfo': { type: 'boolean' } }, strict: true })
  } catch (err) {
    io.err(`tornado-api acl: ${(err as Error).message}\n\n${ACL_USAGE}`)
    return 2
  }
  let options: AclOptions
  let prefix: string
  try {
    const vars = readEnv(AclEnv, env)
    prefix = vars.TORNADO_PREFIX
    checkRedisUrl(vars.REDIS_URL, {})
    options = {
      select: redisDatabaseOf(new URL(vars.REDIS_URL)) !== 0,
      clientSetinfo: parsed.values['client-setinfo'] === true,
      cluster: vars.REDIS_CLUSTER_NODES !== undefined,
    }
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    io.err(`tornado-api acl: ${err.message}\n`)
    return 1
  }
  for (const role of ACL_ROLES) io.out(`${aclSetUserLine(aclUser(role, prefix, options), `<${role}-password>`)}\n`)
  io.err('Replace <agent-password>, <api-password> and <admin-password> with long random passwords before running these.\n')
  return 0
}
