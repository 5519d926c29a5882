import type { Test } from 'tap'
import type { Redis } from 'ioredis'
import { createRedisClient, waitForReady } from '../src/index.js'
import { RedisServer } from '../src/testing/index.js'

/**
 * A private redis-server for one test, with the fail-fast client the store uses and a plain client for setup and
 * assertions (FLUSHALL only ever on this server). All three are stopped in teardown.
 */
export async function privateRedis(t: Test): Promise<{ server: RedisServer; redis: Redis; raw: Redis }> {
  const server = await RedisServer.start()
  const redis = createRedisClient(server.url)
  const raw = server.client()
  t.teardown(async () => {
    redis.disconnect()
    raw.disconnect()
    await server.stop()
  })
  if (!(await waitForReady(redis, 5000))) throw new Error('private redis-server not ready')
  return { server, redis, raw }
}

/** Now on the Redis server's clock, in ms. */
export async function redisNowMs(raw: Redis): Promise<number> {
  const [seconds, micros] = await raw.time()
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}
