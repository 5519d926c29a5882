import t from 'tap'
import { Redis } from 'ioredis'
import { createRedisConnection, heartbeatKey, HeartbeatStore, shardOf, waitForReady, type RedisClient } from '@tornado/shared'
import { freePort } from '@tornado/shared/testing'
import { listeningUrl, logEvents, startProcess, until } from './processes.js'
import { cli, clusterNodes, isMaster, startRedisNodes } from './redis-cluster.js'

// A real Redis Cluster on loopback (three masters, one replica each): tornado-agent and tornado-api processes on the
// Cluster client, exact totals with K=3 shards over the masters, through a master's death and its replica's promotion,
// and the keys CLI on the cluster.
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
  const agents = await Promise.all(ids.map(async (nodeId) => {
    const listen = `127.0.0.1:${await freePort()}`
    const env = { ...common, TORNADO_PREFIX: prefix, TORNADO_NODE_ID: nodeId, AGENT_LISTEN: listen, HEARTBEAT_INTERVAL_MS: String(HEARTBEAT_INTERVAL_MS) }
    const process = startProcess(t, 'agent', env)
    return { nodeId, process, url: `http://${listen}`, events: (name: string) => logEvents(process.output(), name) }
  }))
  const startApi = async (tornadoPrefix: string) => {
    const api = startProcess(t, 'api', { ...common, TORNADO_PREFIX: tornadoPrefix, TORNADO_API_KEYS: API_KEY, TOTALS_CACHE_MS: '0', PORT: '0', HOST: '127.0.0.1' })
    const url = await listeningUrl(api)
    const get = async (path: string, key = API_KEY) => {
      const res = await fetch(`${url}${path}`, { headers: { 'x-api-key': key } })
      return { status: res.status, body: (await res.json()) as unknown }
    }
    return { api, get }
  }
  await cluster.create()
  for (const { url, nodeId } of agents) {
    await until(`agent ${nodeId} answering`, async () => ((await fetch(`${url}/health`)).ok ? true : undefined), 20_000)
  }

  await t.test('K=3 shards spread over masters, exact totals through the API', async (t) => {
    const { api, get } = await startApi('direct')
    t.match(api.output(), `"redis":"Redis Cluster at ${seeds}"`, 'the API logs its cluster seed nodes')
    const writer: RedisClient = createRedisConnection({ url: 'redis://127.0.0.1:1', clusterNodes: cluster.ports.map((port) => ({ host: '127.0.0.1', port })) })
    writer.on('error', () => {})
    t.teardown(() => writer.disconnect())
    t.ok(await waitForReady(writer, 10_000), 'a cluster client is ready')
    const store = new HeartbeatStore(writer, { prefix: 'direct', shards: SHARDS }, 30_000)
    const read = async () => {
      const { status, body } = await get('/dashboard/cluster')
      return [status, body]
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
    const nodes = await get('/dashboard/nodes')
    t.equal((nodes.body as { nodes: unknown[] }).nodes.length, 29)

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
    const { api, get } = await startApi(prefix)
    const read = (key = API_KEY) => get('/dashboard/cluster', key)
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
      const writing = async () => {
        const up = await Promise.all(agents.map(async ({ url }) => /\ntornado_agent_redis_up 1\n/.test(await (await fetch(`${url}/metrics`)).text())))
        return up.every(Boolean) ? true : undefined
      }
      await until('every agent writing again', writing, 3_000)
      const outage = agents[0]!.events('redis_down').slice(downsBefore)
      t.equal(outage.length, 1, 'one redis_down warning for the failover')
      const recovered = agents[0]!.events('redis_recovered')
      t.equal(recovered.length, agents[0]!.events('redis_down').length, 'and as many recoveries')
      const at = (line: Record<string, unknown> | undefined) => Date.parse(String(line?.time)) - killedAt
      t.comment(`${agents[0]!.nodeId}: beats failing ${at(outage[0])} ms after the kill (${JSON.stringify(outage[0]?.err)}; master ${victim}, replica ${replica.port}), written again ${at(recovered.at(-1))} ms after it`)

      // New writes for that shard go to the promoted replica, not to the dead master's address.
      await putCounts(agents[0]!.url, { downloading: 13, muxing: 1, uploading: 0 })
      t.same(await until('a change after the failover', totalsAre(16, 2, 6), 3_000), { total_downloading: 16, total_muxing: 2, total_uploading: 6 })
      t.equal(await cluster.masterOf(heartbeatKey(layout, ids[0]!), witness), replica.port, 'the shard now lives on the promoted replica')
      t.equal((await cli(replica.port, 'exists', heartbeatKey(layout, ids[0]!))).trim(), '1')
    })

    await t.test('tornado-api keys create, list and revoke on the cluster (seed list still naming the dead master)', async (t) => {
      const keys = async (...argv: string[]) => {
        const cli = startProcess(t, 'api', { ...common, TORNADO_PREFIX: prefix }, ['keys', ...argv])
        return { code: await cli.exited, output: cli.output() }
      }
      const created = await keys('create', '--name', 'cluster wall')
      t.equal(created.code, 0, 'keys create')
      const key = /^(sk_\S+)$/m.exec(created.output)?.[1]
      const id = /Created key ([0-9a-f]{16}) \(cluster wall\)\./.exec(created.output)?.[1]
      t.ok(key && id, `a key and its id in ${JSON.stringify(created.output.replace(/sk_\S+/, 'sk_…'))}`)
      t.same(await read(key), { status: 200, body: { total_downloading: 16, total_muxing: 2, total_uploading: 6 } }, 'the created key opens the API')
      const listed = await keys('list')
      t.equal(listed.code, 0, 'keys list')
      t.match(listed.output, new RegExp(`^ID +CREATED +NAME\n${id}  \\S+ +cluster wall\n$`))
      t.same(await keys('revoke', id!), { code: 0, output: `Revoked key ${id}\n` })
      const revokedAt = Date.now()
      await until('the revoked key refused', async () => ((await read(key)).status === 401 ? true : undefined), 2_000)
      t.ok(Date.now() - revokedAt < 1000, `refused ${Date.now() - revokedAt} ms after the revoke`)
      t.same(await read(key), { status: 401, body: { error: 'Invalid API Key' } })
    })

    await t.test('stopping: each agent removes its node, on the promoted master too', async (t) => {
      for (const { process } of agents) process.child.kill('SIGTERM')
      t.same(await Promise.all(agents.map(({ process }) => process.exited)), [0, 0, 0], 'every agent exits 0')
      for (const { events } of agents) t.equal(events('removed')[0]?.removed, true)
      t.same(await read(), { status: 200, body: { total_downloading: 0, total_muxing: 0, total_uploading: 0 } })
      api.child.kill('SIGTERM')
      t.equal(await api.exited, 0, 'the API stops cleanly')
      t.notMatch(api.output(), API_KEY, 'the key is never logged')
    })
  })
})
