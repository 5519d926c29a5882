import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Redis } from 'ioredis'
import { createRedisConnection, HeartbeatStore, waitForReady, type RedisClient } from '@tornado/shared'
import { freePort } from '@tornado/shared/testing'
import { buildApp, loadApiConfig } from '@tornado/api'

// A real three-master Redis Cluster on loopback: the agent's store writes with K=3 shards, the API reads exact totals.
const API_KEY = 'sk_cluster_mode_3f9a1c'

t.test('Redis Cluster: K=3 shards spread over masters, exact totals through the API', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'tornado-cluster-'))
  const ports = await Promise.all([freePort(), freePort(), freePort()])
  const servers: ChildProcess[] = ports.map((port) =>
    spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', join(dir, `nodes-${port}.conf`), '--save', '', '--appendonly', 'no', '--dir', dir], { stdio: 'ignore' }),
  )
  const cleanups: (() => Promise<void> | void)[] = []
  t.teardown(async () => {
    for (const cleanup of cleanups.reverse()) await cleanup()
    await Promise.all(servers.map(async (server) => {
      if (server.exitCode === null) {
        server.kill('SIGKILL')
        await once(server, 'exit')
      }
    }))
    rmSync(dir, { recursive: true, force: true })
  })
  for (const port of ports) {
    const deadline = Date.now() + 10_000
    while (spawnSync('redis-cli', ['-p', String(port), 'ping']).stdout?.toString().trim() !== 'PONG') {
      if (Date.now() > deadline) throw new Error(`redis-server ${port} did not start`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }
  const create = spawnSync('redis-cli', ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-yes'], { encoding: 'utf8' })
  t.equal(create.status, 0, create.stdout.slice(-300))
  const deadline = Date.now() + 10_000
  while (!ports.every((p) => spawnSync('redis-cli', ['-p', String(p), 'cluster', 'info'], { encoding: 'utf8' }).stdout.includes('cluster_state:ok'))) {
    if (Date.now() > deadline) throw new Error('cluster did not reach state ok')
    await new Promise((resolve) => setTimeout(resolve, 100))
  }

  const env = { REDIS_URL: 'redis://127.0.0.1:1', REDIS_CLUSTER_NODES: ports.map((p) => `127.0.0.1:${p}`).join(','), TORNADO_SHARDS: '3', TORNADO_API_KEYS: API_KEY, TOTALS_CACHE_MS: '0', LOG_LEVEL: 'silent' }
  const config = loadApiConfig(env)
  t.same(config.redisClusterNodes, ports.map((port) => ({ host: '127.0.0.1', port })))
  const agentRedis: RedisClient = createRedisConnection({ url: config.redisUrl, clusterNodes: config.redisClusterNodes! })
  agentRedis.on('error', () => {})
  cleanups.push(() => void agentRedis.disconnect())
  t.ok(await waitForReady(agentRedis, 10_000), 'the agent-side cluster client is ready')
  const store = new HeartbeatStore(agentRedis, config.layout, config.staleAfterMs)

  const app = await buildApp({ config })
  cleanups.push(() => app.close())
  const read = async () => {
    const res = await app.inject({ method: 'GET', url: '/dashboard/cluster', headers: { 'x-api-key': API_KEY } })
    return [res.statusCode, res.json()]
  }

  let expected = { total_downloading: 0, total_muxing: 0, total_uploading: 0 }
  for (let i = 0; i < 30; i++) {
    const counts = { downloading: i, muxing: i % 4, uploading: 2 * i }
    await store.writeHeartbeat({ nodeId: `node-${i}`, instanceId: `inst-${i}`, hostname: `node-${i}.example`, ip: '10.0.0.1', counts, agentTimeMs: Date.now() })
    expected = { total_downloading: expected.total_downloading + i, total_muxing: expected.total_muxing + (i % 4), total_uploading: expected.total_uploading + 2 * i }
  }
  t.same(await read(), [200, expected], 'exact totals over 30 nodes in 3 shards')
  await store.writeHeartbeat({ nodeId: 'node-0', instanceId: 'inst-0', hostname: 'h', ip: '10.0.0.1', counts: { downloading: 100, muxing: 0, uploading: 0 }, agentTimeMs: Date.now() })
  t.same(await read(), [200, { ...expected, total_downloading: expected.total_downloading + 100 }], 'a changed node counted once')
  t.equal(await store.removeNode('node-0', 'inst-0'), true)
  t.same(await read(), [200, expected], 'a removed node leaves the totals')
  const nodes = await app.inject({ method: 'GET', url: '/dashboard/nodes', headers: { 'x-api-key': API_KEY } })
  t.equal((nodes.json() as { nodes: unknown[] }).nodes.length, 29)

  // Where did the records land? Each master's own key count.
  const perMaster = await Promise.all(ports.map(async (port) => {
    const direct = new Redis(port, '127.0.0.1')
    try {
      return await direct.dbsize()
    } finally {
      direct.disconnect()
    }
  }))
  t.equal(perMaster.reduce((a, b) => a + b, 0), 29 + 3 * 2, 'every record, ZSET and totals key is somewhere')
  t.ok(perMaster.filter((n) => n > 0).length >= 2, `records on more than one master: ${perMaster.join(', ')}`)
})
