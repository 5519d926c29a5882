import { parseArgs } from 'node:util'
import { Type } from 'typebox'
import { ConfigError, createRedisConnection, describeRedisTarget, readEnv, RedisClusterEnv, RedisSentinelEnv, redisConnectionFromEnv, StoreEnv, waitForReady, type Env } from '@tornado/shared'
import { ApiKeyStore } from './api-keys.js'

/** What `tornado-api keys` reads: where the keys live, nothing else (no TORNADO_API_KEYS needed to manage keys). */
export const KeysEnv = Type.Object({ REDIS_URL: StoreEnv.REDIS_URL, TORNADO_PREFIX: StoreEnv.TORNADO_PREFIX, ...RedisClusterEnv, ...RedisSentinelEnv })

export const KEYS_USAGE = [
  'Usage: tornado-api keys create --name NAME   prints a new API key once (store it: it is not kept)',
  '       tornado-api keys list                 ids, names and creation times (never keys)',
  '       tornado-api keys revoke ID            every API process refuses the key within a second',
  'Uses REDIS_URL, TORNADO_PREFIX, REDIS_CLUSTER_NODES (Redis Cluster) and REDIS_SENTINELS (Sentinel) like the API.',
  '',
].join('\n')

export interface KeysIo {
  out: (text: string) => void
  err: (text: string) => void
}

/** `tornado-api keys ...`: returns the exit code. Runs in-process so tests can call it. */
export async function runKeysCommand(argv: string[], env: Env, io: KeysIo): Promise<number> {
  let parsed
  try {
    parsed = parseArgs({ args: argv, options: { name: { type: 'string' } }, allowPositionals: true, strict: true })
  } catch (err) {
    io.err(`tornado-api keys: ${(err as Error).message}\n\n${KEYS_USAGE}`)
    return 2
  }
  const [action, ...rest] = parsed.positionals
  const usageError = (message: string) => {
    io.err(`tornado-api keys: ${message}\n\n${KEYS_USAGE}`)
    return 2
  }
  if (action === 'create' && (parsed.values.name === undefined || rest.length > 0)) return usageError('create takes --name NAME')
  if (action === 'list' && (rest.length > 0 || parsed.values.name !== undefined)) return usageError('list takes no arguments')
  if (action === 'revoke' && (rest.length !== 1 || parsed.values.name !== undefined)) return usageError('revoke takes one key ID')
  if (action !== 'create' && action !== 'list' && action !== 'revoke') return usageError(`unknown action ${JSON.stringify(action ?? '')}`)

  let vars
  let target
  try {
    vars = readEnv(KeysEnv, env)
    target = redisConnectionFromEnv(vars)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    io.err(`tornado-api keys: ${err.message}\n`)
    return 1
  }
  const redis = createRedisConnection(target, { connectionName: 'tornado-api-keys' })
  // Reported below, once: the last one says why (a wrong Sentinel name or password, a refused connection).
  let lastError: string | undefined
  redis.on('error', (err: Error) => (lastError = whyUnavailable(err.message)))
  try {
    if (!(await waitForReady(redis, 3_000))) {
      io.err(`tornado-api keys: ${describeRedisTarget(target)} is unavailable${lastError ? ` (${lastError})` : ''}\n`)
      return 1
    }
    const store = new ApiKeyStore(redis, vars.TORNADO_PREFIX)
    if (action === 'create') {
      let created
      try {
        created = await store.create(parsed.values.name!)
      } catch (err) {
        if (err instanceof RangeError) return usageError(err.message)
        throw err
      }
      io.out(`${created.key}\n`)
      io.err(`Created key ${created.id} (${created.name}). This is the only time the key is shown: store it now.\n`)
    } else if (action === 'list') {
      const keys = await store.list()
      io.out(`${'ID'.padEnd(16)}  ${'CREATED'.padEnd(24)}  NAME\n`)
      for (const key of keys) io.out(`${key.id}  ${new Date(key.createdAtMs).toISOString().padEnd(24)}  ${key.name}\n`)
    } else {
      if (!(await store.revoke(rest[0]!))) {
        io.err(`tornado-api keys: no key with id ${JSON.stringify(rest[0])}\n`)
        return 1
      }
      io.out(`Revoked key ${rest[0]}\n`)
    }
    return 0
  } catch (err) {
    io.err(`tornado-api keys: ${(err as Error).message}\n`)
    return 1
  } finally {
    redis.disconnect()
  }
}

/** ioredis wraps Sentinel failures as "All sentinels are unreachable. Retrying from scratch after 78.4ms. Last error: X". */
function whyUnavailable(message: string): string {
  const last = /Last error: (.*)$/s.exec(message)?.[1]
  return last === undefined ? message : `Sentinels: ${last}`
}
