import { Redis, type RedisOptions } from 'ioredis'

/** How long any Redis command may take before it fails: a paused or unreachable Redis never hangs a caller. */
export const REDIS_COMMAND_TIMEOUT_MS = 1_000

/**
 * The connection settings both processes use. Commands fail fast instead of queueing while Redis is away
 * (no offline queue, no per-command retries: the agent's next beat and the dashboard's next poll are the retry),
 * and reconnects back off to at most 500 ms, so a returning Redis is used again within about a second.
 */
export function createRedisClient(url: string, options: RedisOptions = {}): Redis {
  return new Redis(url, {
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    connectTimeout: REDIS_COMMAND_TIMEOUT_MS,
    autoResendUnfulfilledCommands: false,
    retryStrategy: (attempt) => Math.min(50 * 2 ** attempt, 500) * (0.75 + Math.random() * 0.5),
    ...options,
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
