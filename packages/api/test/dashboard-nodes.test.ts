import t from 'tap'
import { heartbeatKey, shardKeys } from '@tornado/shared'
import { get, heartbeat, KEY_A, setHeartbeatAge, startTestApi } from './helper.js'

const auth = { 'x-api-key': KEY_A }

interface NodeRow {
  id: string
  last_seen_ms_ago: number
  [field: string]: unknown
}

/** Splits a body into its ages (which depend on when the request ran) and the rest, compared exactly. */
function splitAges(body: unknown): { ages: Record<string, number>; rest: unknown } {
  const nodes = (body as { nodes: NodeRow[] }).nodes
  const ages = Object.fromEntries(nodes.map((node) => [node.id, node.last_seen_ms_ago]))
  return { ages, rest: { nodes: nodes.map((node) => ({ ...node, last_seen_ms_ago: 0 })) } }
}

const row = (id: string, downloading: number, muxing: number, uploading: number, status: 'online' | 'stale') => ({
  id,
  hostname: `${id}.example`,
  ip: '10.0.0.7',
  downloading,
  muxing,
  uploading,
  last_seen_ms_ago: 0,
  status,
})

t.test('GET /dashboard/nodes on a real redis-server', async (t) => {
  const api = await startTestApi(t)
  const nodesUrl = `${api.url}/dashboard/nodes`

  t.beforeEach(async () => {
    await api.raw.flushall() // the private server startTestApi started
  })

  t.test('no nodes: an empty list', async (t) => {
    const res = await get(nodesUrl, auth)
    t.equal(res.status, 200)
    t.equal(res.text, '{"nodes":[]}')
    t.equal(res.contentType, 'application/json; charset=utf-8')
  })

  t.test('every field, sorted by id, whatever order the nodes beat in', async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 15, muxing: 4, uploading: 0 }))
    await api.agentStore.writeHeartbeat(heartbeat('node-10', { downloading: 10, muxing: 3, uploading: 5 }))
    await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 20, muxing: 5, uploading: 3 }))
    const res = await get(nodesUrl, auth)
    t.equal(res.status, 200)
    const { ages, rest } = splitAges(res.body)
    t.same(rest, {
      nodes: [row('node-1', 20, 5, 3, 'online'), row('node-10', 10, 3, 5, 'online'), row('node-2', 15, 4, 0, 'online')],
    })
    for (const [id, age] of Object.entries(ages)) t.ok(age >= 0 && age < 1_000, `${id} seen ${age} ms ago`)
    t.match(res.text, /^\{"nodes":\[\{"id":"node-1","hostname":"node-1\.example","ip":"10\.0\.0\.7","downloading":20,"muxing":5,"uploading":3,"last_seen_ms_ago":\d+,"status":"online"\},/)
  })

  t.test('status boundaries on the Redis clock: online under 5 s, stale from 5 s, gone after 30 s', async (t) => {
    // Margins of a second below each boundary: a loaded CI machine may take hundreds of ms between set-up and read.
    const ids = { 'a-fresh': 0, 'b-4s': 4_000, 'c-5s': 5_000, 'd-29s': 29_000, 'e-30.001s': 30_001 }
    for (const [id, age] of Object.entries(ids)) {
      await api.agentStore.writeHeartbeat(heartbeat(id, { downloading: 1, muxing: 0, uploading: 0 }))
      if (age > 0) await setHeartbeatAge(api, id, age)
    }
    const res = await get(nodesUrl, auth)
    t.equal(res.status, 200)
    const { ages, rest } = splitAges(res.body)
    t.same(rest, {
      nodes: [row('a-fresh', 1, 0, 0, 'online'), row('b-4s', 1, 0, 0, 'online'), row('c-5s', 1, 0, 0, 'stale'), row('d-29s', 1, 0, 0, 'stale')],
    })
    t.ok(ages['c-5s']! >= 5_000 && ages['c-5s']! < 6_000, `c seen ${ages['c-5s']} ms ago`)
    t.ok(ages['d-29s']! >= 29_000 && ages['d-29s']! < 30_000, `d seen ${ages['d-29s']} ms ago`)
    t.equal(await api.raw.exists(heartbeatKey(api.config.layout, 'e-30.001s')), 0, 'the gone node is pruned')
  })

  t.test("an agent clock 5 minutes off does not matter: ages are on Redis's clock", async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('behind', { downloading: 2, muxing: 0, uploading: 1 }, Date.now() - 300_000))
    await api.agentStore.writeHeartbeat(heartbeat('ahead', { downloading: 3, muxing: 4, uploading: 0 }, Date.now() + 300_000))
    const { ages, rest } = splitAges((await get(nodesUrl, auth)).body)
    t.same(rest, { nodes: [row('ahead', 3, 4, 0, 'online'), row('behind', 2, 0, 1, 'online')] })
    t.ok(ages.ahead! < 1_000 && ages.behind! < 1_000, JSON.stringify(ages))
  })

  t.test('garbage records are skipped, dropped and logged with their count', async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('good', { downloading: 4, muxing: 2, uploading: 1 }))
    await api.agentStore.writeHeartbeat(heartbeat('bad-count', { downloading: 9, muxing: 9, uploading: 9 }))
    await api.agentStore.writeHeartbeat(heartbeat('bad-type', { downloading: 9, muxing: 9, uploading: 9 }))
    // Records are 'downloading|muxing|uploading|…' strings (see heartbeat-scripts.ts).
    const badCount = heartbeatKey(api.config.layout, 'bad-count')
    await api.raw.set(badCount, (await api.raw.get(badCount))!.replace(/^9\|9\|9\|/, '9|9|1.5|'))
    await api.raw.del(heartbeatKey(api.config.layout, 'bad-type'))
    await api.raw.hset(heartbeatKey(api.config.layout, 'bad-type'), 'downloading', '9')
    const before = api.logs.withMessage('dropped garbage heartbeat records from the store').length
    const res = await get(nodesUrl, auth)
    t.equal(res.status, 200)
    t.same(splitAges(res.body).rest, { nodes: [row('good', 4, 2, 1, 'online')] })
    const warnings = api.logs.withMessage('dropped garbage heartbeat records from the store').slice(before)
    t.equal(warnings.length, 1)
    t.equal(warnings[0]?.level, 40)
    t.equal(warnings[0]?.dropped, 2)
    t.same((await get(`${api.url}/dashboard/cluster`, auth)).body, { total_downloading: 4, total_muxing: 2, total_uploading: 1 }, 'the totals were recounted')
  })

  t.test('credentials: 401 without or with a wrong key', async (t) => {
    const missing = await get(nodesUrl)
    t.equal(missing.status, 401)
    t.equal(missing.text, '{"error":"Missing x-api-key header"}')
    const wrong = await get(nodesUrl, { 'x-api-key': 'sk_wrong' })
    t.equal(wrong.status, 401)
    t.equal(wrong.text, '{"error":"Invalid API Key"}')
  })

  t.test('Redis stopped: 503 {"error":"Redis unavailable"} within about a second', async (t) => {
    await api.redisServer.stop()
    t.teardown(async () => {
      await api.redisServer.restart()
    })
    const res = await get(nodesUrl, auth)
    t.equal(res.status, 503)
    t.equal(res.text, '{"error":"Redis unavailable"}')
    t.ok(res.elapsedMs < 1_500, `answered in ${Math.round(res.elapsedMs)} ms`)
  })
})

t.test('nodes of every shard, one sorted list', async (t) => {
  const api = await startTestApi(t, { TORNADO_SHARDS: '4', TORNADO_PREFIX: 'fleet-b' })
  for (let i = 11; i >= 0; i--) {
    await api.agentStore.writeHeartbeat(heartbeat(`worker-${String(i).padStart(2, '0')}`, { downloading: i, muxing: 1, uploading: 0 }))
  }
  let shardsUsed = 0
  for (let shard = 0; shard < 4; shard++) if ((await api.raw.zcard(shardKeys(api.config.layout, shard).nodes)) > 0) shardsUsed++
  t.ok(shardsUsed > 1, 'the nodes really spread over several shards')
  const { rest } = splitAges((await get(`${api.url}/dashboard/nodes`, auth)).body)
  t.same(rest, {
    nodes: Array.from({ length: 12 }, (_, i) => row(`worker-${String(i).padStart(2, '0')}`, i, 1, 0, 'online')),
  })
})

t.test('ONLINE_WITHIN_MS moves the online/stale line', async (t) => {
  const api = await startTestApi(t, { ONLINE_WITHIN_MS: '1000' })
  await api.agentStore.writeHeartbeat(heartbeat('recent', { downloading: 1, muxing: 1, uploading: 1 }))
  await api.agentStore.writeHeartbeat(heartbeat('two-s', { downloading: 2, muxing: 2, uploading: 2 }))
  await setHeartbeatAge(api, 'two-s', 2_000)
  const { rest } = splitAges((await get(`${api.url}/dashboard/nodes`, auth)).body)
  t.same(rest, { nodes: [row('recent', 1, 1, 1, 'online'), row('two-s', 2, 2, 2, 'stale')] })
})

t.test('many dashboards reading the node list at once cost Redis one read', async (t) => {
  const api = await startTestApi(t, { TOTALS_CACHE_MS: '250' })
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 4, muxing: 2, uploading: 1 }))
  await api.raw.config('RESETSTAT')
  const responses = await Promise.all(Array.from({ length: 30 }, () => get(`${api.url}/dashboard/nodes`, auth)))
  t.same(new Set(responses.map((res) => res.status)), new Set([200]))
  const stats = await api.raw.info('commandstats')
  const calls = Number(/cmdstat_evalsha:calls=(\d+)/.exec(stats)?.[1] ?? 0) + Number(/cmdstat_eval:calls=(\d+)/.exec(stats)?.[1] ?? 0)
  t.ok(calls >= 1 && calls <= 2, `30 concurrent requests made ${calls} Redis read(s)`)
})
