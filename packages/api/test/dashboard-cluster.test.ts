import t from 'tap'
import { shardKeys, heartbeatKey } from '@tornado/shared'
import { get, heartbeat, KEY_A, setHeartbeatAge, startTestApi, totals } from './helper.js'

const auth = { 'x-api-key': KEY_A }

t.test('GET /dashboard/cluster on a real redis-server', async (t) => {
  const api = await startTestApi(t)
  const cluster = `${api.url}/dashboard/cluster`

  t.beforeEach(async () => {
    await api.raw.flushall() // the private server startTestApi started
  })

  t.test('no nodes: zeros', async (t) => {
    const res = await get(cluster, auth)
    t.equal(res.status, 200)
    t.equal(res.text, '{"total_downloading":0,"total_muxing":0,"total_uploading":0}')
    t.equal(res.contentType, 'application/json; charset=utf-8')
  })

  t.test('sums every node written through HeartbeatStore.writeHeartbeat', async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 20, muxing: 5, uploading: 3 }))
    await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 15, muxing: 4, uploading: 0 }))
    await api.agentStore.writeHeartbeat(heartbeat('node-3', { downloading: 10, muxing: 3, uploading: 5 }))
    const res = await get(cluster, auth)
    t.equal(res.status, 200)
    t.equal(res.text, '{"total_downloading":45,"total_muxing":12,"total_uploading":8}')

    // A node's new counts replace its old ones.
    await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 1, muxing: 0, uploading: 7 }))
    t.same((await get(cluster, auth)).body, totals(31, 8, 15))
  })

  t.test('a node last seen 31 s ago (Redis clock) is not counted, one seen 29 s ago is', async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('fresh', { downloading: 1, muxing: 2, uploading: 3 }))
    await api.agentStore.writeHeartbeat(heartbeat('old-29', { downloading: 10, muxing: 20, uploading: 30 }))
    await api.agentStore.writeHeartbeat(heartbeat('old-31', { downloading: 100, muxing: 200, uploading: 300 }))
    await setHeartbeatAge(api, 'old-29', 29_000)
    await setHeartbeatAge(api, 'old-31', 31_000)
    const res = await get(cluster, auth)
    t.equal(res.status, 200)
    t.same(res.body, totals(11, 22, 33))
    t.equal(await api.raw.exists(heartbeatKey(api.config.layout, 'old-31')), 0, 'the stale record is pruned')
    t.same((await get(cluster, auth)).body, totals(11, 22, 33), 'and stays out')
  })

  t.test("an agent clock 5 minutes off does not matter: age is judged on Redis's clock", async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('behind', { downloading: 2, muxing: 0, uploading: 1 }, Date.now() - 300_000))
    await api.agentStore.writeHeartbeat(heartbeat('ahead', { downloading: 3, muxing: 4, uploading: 0 }, Date.now() + 300_000))
    const res = await get(cluster, auth)
    t.equal(res.status, 200)
    t.same(res.body, totals(5, 4, 1))
  })

  t.test('garbage records are dropped, logged as a warning with their count, and the rest still counted', async (t) => {
    await api.agentStore.writeHeartbeat(heartbeat('good', { downloading: 4, muxing: 2, uploading: 1 }))
    await api.agentStore.writeHeartbeat(heartbeat('bad', { downloading: 9, muxing: 9, uploading: 9 }))
    const keys = shardKeys(api.config.layout, 0)
    const badKey = heartbeatKey(api.config.layout, 'bad')
    await api.raw.set(badKey, (await api.raw.get(badKey))!.replace(/^\d+/, 'not-a-number'))
    await api.raw.hset(keys.totals, 'muxing', 'garbage') // forces the recount that finds the bad record
    const res = await get(cluster, auth)
    t.equal(res.status, 200)
    t.same(res.body, totals(4, 2, 1))
    const warnings = api.logs.withMessage('dropped garbage heartbeat records from the store')
    t.equal(warnings.length, 1)
    t.equal(warnings[0]?.level, 40)
    t.equal(warnings[0]?.dropped, 2, 'the bad record, and the totals hash with a garbage field')
  })
})

t.test('totals over several shards', async (t) => {
  const api = await startTestApi(t, { TORNADO_SHARDS: '4', TORNADO_PREFIX: 'fleet-a' })
  for (let i = 0; i < 12; i++) {
    await api.agentStore.writeHeartbeat(heartbeat(`worker-${i}`, { downloading: i, muxing: 1, uploading: 2 }))
  }
  const shardsUsed = new Set<string>()
  for (let shard = 0; shard < 4; shard++) {
    if ((await api.raw.zcard(shardKeys(api.config.layout, shard).nodes)) > 0) shardsUsed.add(String(shard))
  }
  t.ok(shardsUsed.size > 1, 'the nodes really spread over several shards')
  const res = await get(`${api.url}/dashboard/cluster`, auth)
  t.equal(res.status, 200)
  t.same(res.body, totals(66, 12, 24))
})

t.test('STALE_AFTER_MS sets the cut-off', async (t) => {
  const api = await startTestApi(t, { STALE_AFTER_MS: '5000' })
  await api.agentStore.writeHeartbeat(heartbeat('recent', { downloading: 1, muxing: 1, uploading: 1 }))
  await api.agentStore.writeHeartbeat(heartbeat('six-s', { downloading: 5, muxing: 5, uploading: 5 }))
  await api.agentStore.writeHeartbeat(heartbeat('four-s', { downloading: 2, muxing: 0, uploading: 0 }))
  await setHeartbeatAge(api, 'six-s', 6_000)
  await setHeartbeatAge(api, 'four-s', 4_000)
  t.same((await get(`${api.url}/dashboard/cluster`, auth)).body, totals(3, 1, 1))
})

t.test('requests sharing one read log its drops once', async (t) => {
  const api = await startTestApi(t, { TOTALS_CACHE_MS: '5000' })
  await api.agentStore.writeHeartbeat(heartbeat('good', { downloading: 4, muxing: 2, uploading: 1 }))
  await api.raw.hset(shardKeys(api.config.layout, 0).totals, 'muxing', 'garbage')
  const responses = await Promise.all([1, 2, 3, 4].map(() => get(`${api.url}/dashboard/cluster`, auth)))
  responses.push(await get(`${api.url}/dashboard/cluster`, auth)) // from the reuse window
  t.same(responses.map((res) => res.body), Array(5).fill(totals(4, 2, 1)))
  const warnings = api.logs.withMessage('dropped garbage heartbeat records from the store')
  t.same(warnings.map((warning) => warning.dropped), [1], 'one line for the one read that dropped it')
})
