// Helpers shared by the benchmark parts. The benchmark runs the built packages (npm run build first).
import os from 'node:os'
import { createRedisClient, HeartbeatStore, waitForReady } from '@tornado/shared'
import { RedisServer } from '@tornado/shared/testing'

export const PREFIX = 'bench'
/** Seeded nodes must stay live for the whole run (minutes), or reads would get cheaper as they are pruned. */
export const BENCH_STALE_AFTER_MS = 3_600_000

export async function startRedis() {
  const server = await RedisServer.start()
  const admin = server.client()
  await admin.ping()
  return { server, admin }
}

export async function newStore(url, { shards = 1, staleAfterMs = BENCH_STALE_AFTER_MS } = {}) {
  const redis = createRedisClient(url, { commandTimeout: 30_000 })
  if (!(await waitForReady(redis, 5000))) throw new Error('bench: Redis not ready')
  return { redis, store: new HeartbeatStore(redis, { prefix: PREFIX, shards }, staleAfterMs) }
}

export const nodeId = (i) => `bench-node-${i}`

export function randomCounts(random = Math.random) {
  return {
    downloading: Math.floor(random() * 5),
    muxing: Math.floor(random() * 3),
    uploading: Math.floor(random() * 4),
  }
}

/** Seeds `count` nodes through the very function the agent uses, `concurrency` beats in flight at a time. */
export async function seedNodes(store, count, concurrency = 512) {
  let next = 0
  const worker = async () => {
    while (next < count) {
      const i = next++
      await store.writeHeartbeat({
        nodeId: nodeId(i),
        instanceId: `bench-${i}`,
        hostname: `host-${i}`,
        ip: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`,
        counts: randomCounts(),
        agentTimeMs: Date.now(),
      })
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
}

/** usec_per_call and calls of one command from INFO commandstats. */
export async function commandStats(admin, command) {
  const info = await admin.info('commandstats')
  const line = info.split('\n').find((l) => l.startsWith(`cmdstat_${command}:`))
  if (!line) return { calls: 0, usecPerCall: 0 }
  const fields = Object.fromEntries(line.split(':')[1].trim().split(',').map((kv) => kv.split('=')))
  return { calls: Number(fields.calls), usecPerCall: Number(fields.usec_per_call) }
}

/** Seconds of CPU (user + sys) the Redis server has used so far. */
export async function redisCpuSeconds(admin) {
  const info = await admin.info('cpu')
  const value = (name) => Number(info.match(new RegExp(`^${name}:([\\d.]+)`, 'm'))?.[1] ?? 0)
  return value('used_cpu_user') + value('used_cpu_sys')
}

export function machine() {
  const cpus = os.cpus()
  return `${cpus.length} × ${cpus[0]?.model.trim() ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB RAM, Node ${process.version}, ${os.type()} ${os.release()}`
}

export const fmt = (n, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : String(n))

export function percentile(sorted, p) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]
}
