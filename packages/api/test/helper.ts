import { Writable } from 'node:stream'
import type { Test } from 'tap'
import type { Redis } from 'ioredis'
import {
  createRedisClient,
  HeartbeatStore,
  shardKeys,
  waitForReady,
  type Env,
  type JobCounts,
  type NodeHeartbeat,
} from '@tornado/shared'
import { RedisServer } from '@tornado/shared/testing'
import { buildApp, loadApiConfig, type ApiConfig, type App } from '../src/index.js'

export const KEY_A = 'sk_test_alpha_0123456789'
export const KEY_B = 'sk_test_bravo_9876543210'

/** Log lines a test app wrote, parsed (pino writes one JSON object per line). */
export class LogCapture {
  readonly text: string[] = []
  readonly stream = new Writable({
    write: (chunk: Buffer, _encoding, callback) => {
      this.text.push(...chunk.toString().split('\n').filter((line) => line !== ''))
      callback()
    },
  })

  get entries(): Record<string, unknown>[] {
    return this.text.map((line) => JSON.parse(line) as Record<string, unknown>)
  }

  withMessage(msg: string): Record<string, unknown>[] {
    return this.entries.filter((entry) => entry.msg === msg)
  }
}

export interface TestApi {
  app: App
  config: ApiConfig
  /** http://127.0.0.1:<port> of the listening app. */
  url: string
  redisServer: RedisServer
  /** A plain client for setup and assertions (FLUSHALL only ever on redisServer, which this test started). */
  raw: Redis
  /** Writes heartbeats the way the agent does: same store, its own fail-fast client. */
  agentStore: HeartbeatStore
  agentRedis: Redis
  logs: LogCapture
}

/**
 * A private redis-server and the app built against it, listening on a free loopback port.
 * With redisStopped, the server is stopped before the app is built (`redisServer.restart()` brings it up).
 * Teardown closes the app (which quits its Redis client), the helper clients and the server.
 */
export async function startTestApi(
  t: Test,
  env: Env = {},
  { redisStopped = false, streamIntervalMs }: { redisStopped?: boolean; streamIntervalMs?: number } = {},
): Promise<TestApi> {
  const redisServer = await RedisServer.start()
  if (redisStopped) await redisServer.stop()
  // Reads are not reused across requests unless a test asks: most tests write and read back at once.
  const config = loadApiConfig({ REDIS_URL: redisServer.url, TORNADO_API_KEYS: `${KEY_A},${KEY_B}`, TOTALS_CACHE_MS: '0', ...env })
  const logs = new LogCapture()
  const app = await buildApp({ config, logger: { stream: logs.stream }, ...(streamIntervalMs ? { streamIntervalMs } : {}) })
  const raw = redisServer.client()
  raw.on('error', () => {})
  const agentRedis = createRedisClient(redisServer.url)
  agentRedis.on('error', () => {}) // outages are what some tests are about
  t.teardown(async () => {
    await app.close()
    agentRedis.disconnect()
    raw.disconnect()
    await redisServer.stop()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  if (address === null || typeof address === 'string') throw new Error('app is not listening on TCP')
  if (!redisStopped) await waitForReady(agentRedis, 5_000)
  const agentStore = new HeartbeatStore(agentRedis, config.layout, config.staleAfterMs)
  return { app, config, url: `http://127.0.0.1:${address.port}`, redisServer, raw, agentStore, agentRedis, logs }
}

export function heartbeat(nodeId: string, counts: JobCounts, agentTimeMs = Date.now()): NodeHeartbeat {
  return { nodeId, instanceId: `instance-${nodeId}`, hostname: `${nodeId}.example`, ip: '10.0.0.7', counts, agentTimeMs }
}

/** Now on the Redis server's clock, in ms: the clock heartbeat ages are judged on. */
export async function redisNowMs(raw: Redis): Promise<number> {
  const [seconds, micros] = await raw.time()
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
}

/** Makes a node's last heartbeat `ageMs` old on Redis's clock. */
export async function setHeartbeatAge(api: TestApi, nodeId: string, ageMs: number): Promise<void> {
  const { nodes } = shardKeys(api.config.layout, 0)
  if (api.config.layout.shards !== 1) throw new Error('setHeartbeatAge assumes one shard')
  await api.raw.zadd(nodes, (await redisNowMs(api.raw)) - ageMs, nodeId)
}

export interface JsonResponse {
  status: number
  body: unknown
  text: string
  contentType: string | null
  elapsedMs: number
}

/** A real HTTP GET, returning the parsed body and how long it took. */
export async function get(url: string, headers: Record<string, string> = {}): Promise<JsonResponse> {
  const started = performance.now()
  const response = await fetch(url, { headers })
  const text = await response.text()
  return {
    status: response.status,
    body: JSON.parse(text) as unknown,
    text,
    contentType: response.headers.get('content-type'),
    elapsedMs: performance.now() - started,
  }
}

export const totals = (d: number, m: number, u: number) => ({ total_downloading: d, total_muxing: m, total_uploading: u })
