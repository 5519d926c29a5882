import t from 'tap'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { loadConfig, startAgent, type Agent } from '@tornado/agent'
import { createRedisConnection, heartbeatKey, HeartbeatStore, shardOf, waitForReady, type RedisClient } from '@tornado/shared'
import { freePort } from '@tornado/shared/testing'
import { buildApp, loadApiConfig, runKeysCommand } from '@tornado/api'
import { until } from './processes.js'
import { cli, clusterNodes, isMaster, startRedisNodes } from './redis-cluster.js'

// A real Redis Cluster on loopback (three masters, one replica each): agents and the API on the Cluster client, exact
// totals with K=3 shards over the masters, through a master's death and its replica's promotion. The agents run
// in-process (startAgent with the config loadConfig reads from their env, their own Cluster clients, their real local
// HTTP interface): three tornado-agent processes loading TypeScript took over 20 s to start on a loaded 2-core box.
const API_KEY = 'sk_cluster_mode_3f9a1c'
const SHARDS = 3
const HEARTBEAT_INTERVAL_MS = 500
/** How long after a master's death the totals must be exact again: promotion (node timeout 1 s, about 2.5 s) and a beat. */
const FAILOVER_BOUND_MS = 15_000

t.test('Redis Cluster with replicas', async (t) => {
  const cluster = await startRedisNodes(t, 3)
  const seeds = cluster.ports.map((p) => `127.0.0.1:${p}`).join(',')
  // Port 1 refuses: were REDIS_CLUSTER_NODES ignored, nothing would connect and every check below would fail.
  const common = { REDIS_URL: 'redis://127.0.0.1:1', REDIS_CLUSTER_NODES: seeds, TORNADO_SHARDS: String(SHARDS) }
  const prefix = 'live'
  const layout = { prefix, shards: SHARDS }

  // One agent per shard, so every shard (and so more than one master) holds a live record. Started before the
  // nodes form a cluster, as a fleet may be: they must find it once it is there (and it saves the test seconds).
  const ids: string[] = []
  for (let i = 0; ids.length < SHARDS; i++) {
    const id = `worker-${i}`
    if (!ids.some((other) => shardOf(other, SHARDS) === shardOf(id, SHARDS))) ids.push(id)
  }
  const agentsStarting = Promise.all(ids.map(async (nodeId) => {
    const lines: Record<string, unknown>[] = []
    const logger = pino({ level: 'info' }, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) })
    const env = { ...common, TORNADO_PREFIX: prefix, TORNADO_NODE_ID: nodeId, AGENT_LISTEN: '127.0.0.1:0', HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS) }
    const agent: Agent = await startAgent(loadConfig(env, { hostname: 'cluster-test' }), { logger })
    t.teardown(() => agent.stop())
    return { nodeId, agent, url: agent.url, events: (name: string) => lines.filter((line) => line.event === name) }
  }))
  await cluster.create()
  const agents = await agentsStarting

  await t.test('K=3 shards spread over masters, exact totals through the API', async (t) => {
    const config = loadApiConfig({ ...common, TORNADO_PREFIX: 'direct', TORNADO_API_KEYS: API_KEY, TOTALS_CACHE_MS: '0', LOG_LEVEL: 'silent' })
    t.same(config.redisClusterNodes, cluster.ports.map((port) => ({ host: '127.0.0.1', port })))
    const writer: RedisClient = createRedisConnection({ url: config.redisUrl, clusterNodes: config.redisClusterNodes! })
    writer.on('error', () => {})
    t.teardown(() => writer.disconnect())
    t.ok(await waitForReady(writer, 10_000), 'a cluster client is ready')
    const store = new HeartbeatStore(writer, config.layout, config.staleAfterMs)
    const app = await buildApp({ config })
    t.teardown(() => app.close())
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

    // Where did the records land? Each master's own keys under this subtest's prefix.
    const masters = (await clusterNodes(cluster.ports[0]!)).filter(isMaster)
    const perMaster = await Promise.all(masters.map(async ({ port }) => {
      const direct = new Redis(port, '127.0.0.1')
      try {
        return (await direct.keys('{direct:*')).length
      } finally {
        direct.disconnect()
      }
    }))
    t.equal(perMaster.reduce((a, b) => a + b, 0), 29 + 3 * 2, 'every record, ZSET and totals key is somewhere')
    t.ok(perMaster.filter((n) => n > 0).length >= 2, `records on more than one master: ${perMaster.join(', ')}`)
  })

  await t.test('agents and the API through a master failover; keys CLI on the cluster', async (t) => {
    const config = loadApiConfig({ ...common, TORNADO_PREFIX: prefix, TORNADO_API_KEYS: API_KEY, TOTALS_CACHE_MS: '0', LOG_LEVEL: 'silent' })
    const app = await buildApp({ config })
    t.teardown(() => app.close())
    const read = async (key = API_KEY) => {
      const res = await app.inject({ method: 'GET', url: '/dashboard/cluster', headers: { 'x-api-key': key } })
      return { status: res.statusCode, body: res.json() as unknown }
    }
    const totalsAre = (d: number, m: number, u: number) => async () => {
      const { status, body } = await read()
      return status === 200 && JSON.stringify(body) === JSON.stringify({ total_downloading: d, total_muxing: m, total_uploading: u }) ? body : undefined
    }

    t.equal(agents[0]!.events('config')[0]?.redis_cluster_nodes, seeds, 'the agent logs its cluster seed nodes')
    const putCounts = async (url: string, counts: object) => {
      const res = await fetch(`${url}/counts`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(counts) })
      t.equal(res.status, 204)
    }
    await putCounts(agents[0]!.url, { downloading: 3, muxing: 1, uploading: 0 })
    await putCounts(agents[1]!.url, { downloading: 2, muxing: 0, uploading: 5 })
    await putCounts(agents[2]!.url, { downloading: 1, muxing: 1, uploading: 1 })
    t.same(await until('exact totals of three agents', totalsAre(6, 2, 6), 5_000), { total_downloading: 6, total_muxing: 2, total_uploading: 6 })

    const homes = await Promise.all(ids.map((id) => cluster.masterOf(heartbeatKey(layout, id), cluster.ports[0]!)))
    t.ok(new Set(homes).size >= 2, `the agents' records sit on ${new Set(homes).size} masters (ports ${homes.join(', ')})`)

    await t.test('a master holding a record dies: its replica is promoted, totals exact again without restarts', async (t) => {
      const victim = homes[0]!
      const before = await clusterNodes(victim)
      const victimId = before.find((n) => n.flags.includes('myself'))!.id
      const replica = before.find((n) => n.masterId === victimId)!
      const witness = cluster.ports.find((p) => p !== victim)!
      const downsBefore = agents[0]!.events('redis_down').length
      await cluster.kill(victim)
      const killedAt = Date.now()

      // Poll the API and the cluster's view side by side until the replica is promoted and the totals are exact.
      const exact = { status: 200, body: { total_downloading: 6, total_muxing: 2, total_uploading: 6 } }
      const answers = new Set<string>()
      let promotedAfter: number | undefined
      let exactAfter: number | undefined
      while (exactAfter === undefined && Date.now() - killedAt < FAILOVER_BOUND_MS) {
        const answer = await read()
        answers.add(JSON.stringify(answer))
        if (promotedAfter === undefined) {
          const promoted = (await clusterNodes(witness)).find((n) => n.id === replica.id)
          const ok = (await cli(witness, 'cluster', 'info')).includes('cluster_state:ok')
          if (promoted && isMaster(promoted) && ok) promotedAfter = Date.now() - killedAt
        } else if (JSON.stringify(answer) === JSON.stringify(exact)) {
          exactAfter = Date.now() - killedAt
        }
        await new Promise((resolve) => setTimeout(resolve, 50))
      }
      t.comment(`failover: replica promoted ${promotedAfter} ms after the master's SIGKILL, API totals exact ${exactAfter} ms after it`)
      t.ok(promotedAfter !== undefined && exactAfter !== undefined, `promoted and exact within ${FAILOVER_BOUND_MS} ms`)
      // Meanwhile the API said it could not read, never a wrong total: a read needs every shard.
      t.same([...answers].sort(), [JSON.stringify(exact), JSON.stringify({ status: 503, body: { error: 'Redis unavailable' } })].sort(), 'only 503s and exact totals')
      // Every agent kept beating through it; the one whose master died saw its beats fail and said so once.
      await until('every agent writing again', async () => (agents.every(({ agent }) => agent.loop.redisUp === true) ? true : undefined), 3_000)
      const outage = agents[0]!.events('redis_down').slice(downsBefore)
      t.equal(outage.length, 1, 'one redis_down warning for the failover')
      const recovered = agents[0]!.events('redis_recovered')
      t.equal(recovered.length, agents[0]!.events('redis_down').length, 'and as many recoveries')
      const at = (line: Record<string, unknown> | undefined) => Number(line?.time) - killedAt
      t.comment(`${agents[0]!.nodeId}: beats failing ${at(outage[0])} ms after the kill (${JSON.stringify(outage[0]?.err)}; master ${victim}, replica ${replica.port}), written again ${at(recovered.at(-1))} ms after it`)

      // New writes for that shard go to the promoted replica, not to the dead master's address.
      await putCounts(agents[0]!.url, { downloading: 13, muxing: 1, uploading: 0 })
      t.same(await until('a change after the failover', totalsAre(16, 2, 6), 3_000), { total_downloading: 16, total_muxing: 2, total_uploading: 6 })
      t.equal(await cluster.masterOf(heartbeatKey(layout, ids[0]!), witness), replica.port, 'the shard now lives on the promoted replica')
      t.equal((await cli(replica.port, 'exists', heartbeatKey(layout, ids[0]!))).trim(), '1')
    })

    await t.test('tornado-api keys create, list and revoke on the cluster (seed list still naming the dead master)', async (t) => {
      const keys = async (...argv: string[]) => {
        let out = ''
        let err = ''
        const code = await runKeysCommand(argv, { ...common, TORNADO_PREFIX: prefix }, { out: (s) => (out += s), err: (s) => (err += s) })
        return { code, out, err }
      }
      const created = await keys('create', '--name', 'cluster wall')
      t.equal(created.code, 0, 'keys create')
      const key = created.out.trim()
      const id = /^Created key ([0-9a-f]{16}) \(cluster wall\)\./.exec(created.err)?.[1]
      t.ok(id, `the key id in ${JSON.stringify(created.err)}`)
      t.same(await read(key), { status: 200, body: { total_downloading: 16, total_muxing: 2, total_uploading: 6 } }, 'the created key opens the API')
      const listed = await keys('list')
      t.equal(listed.code, 0, 'keys list')
      t.match(listed.out, new RegExp(`^ID +CREATED +NAME\n${id}  \\S+ +cluster wall\n$`))
      t.same(await keys('revoke', id!), { code: 0, out: `Revoked key ${id}\n`, err: '' })
      const refused = await until('the revoked key refused', async () => ((await read(key)).status === 401 ? Date.now() : undefined), 2_000)
      t.ok(refused, 'refused within 2 s')
      t.same(await read(key), { status: 401, body: { error: 'Invalid API Key' } })
    })

    await t.test('stopping: each agent removes its node, on the promoted master too', async (t) => {
      await Promise.all(agents.map(({ agent }) => agent.stop()))
      for (const { events } of agents) t.equal(events('removed')[0]?.removed, true)
      t.same(await read(), { status: 200, body: { total_downloading: 0, total_muxing: 0, total_uploading: 0 } })
    })
  })
})
