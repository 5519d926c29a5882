import t from 'tap'
import { HeartbeatStore, heartbeatKey, shardKeys, type JobCounts, type NodeHeartbeat } from '../src/index.js'
import { privateRedis, redisNowMs } from './helper.js'

const beat = (nodeId: string, counts: JobCounts): NodeHeartbeat => ({
  nodeId,
  instanceId: `i-${nodeId}`,
  hostname: `${nodeId}.local`,
  ip: '10.0.0.1',
  counts,
  agentTimeMs: Date.now(),
})


t.test('HeartbeatStore.listNodes on a real redis-server', async (t) => {
  const { redis, raw } = await privateRedis(t)

  t.beforeEach(async () => {
    await raw.flushall() // the private server this test started
  })

  t.test('empty store: no nodes', async (t) => {
    const store = new HeartbeatStore(redis, { prefix: 'tornado', shards: 1 }, 30_000)
    const snapshot = await store.listNodes()
    t.same(snapshot.nodes, [])
    t.equal(snapshot.dropped, 0)
    t.ok(Math.abs(snapshot.redisTimeMs - (await redisNowMs(raw))) < 1_000, 'Redis time')
  })

  t.test('every live node of every shard, sorted by id, ages on the Redis clock; stale ones pruned', async (t) => {
    const layout = { prefix: 'fleet', shards: 4 }
    const store = new HeartbeatStore(redis, layout, 30_000)
    const ids = ['w-10', 'w-2', 'W-3', 'a', 'w-1', 'zz', 'node:7@x']
    for (const [i, id] of ids.entries()) await store.writeHeartbeat(beat(id, { downloading: i, muxing: 1, uploading: 2 }))
    const now = await redisNowMs(raw)
    for (let shard = 0; shard < 4; shard++) {
      const { nodes } = shardKeys(layout, shard)
      if ((await raw.zscore(nodes, 'w-2')) !== null) await raw.zadd(nodes, now - 12_000, 'w-2')
      if ((await raw.zscore(nodes, 'zz')) !== null) await raw.zadd(nodes, now - 31_000, 'zz')
    }
    const snapshot = await store.listNodes()
    t.same(
      snapshot.nodes.map((node) => node.id),
      ['W-3', 'a', 'node:7@x', 'w-1', 'w-10', 'w-2'],
      'sorted by code unit order, the stale node gone',
    )
    t.equal(snapshot.pruned, 1)
    t.equal(await raw.exists(heartbeatKey(layout, 'zz')), 0, 'its record deleted')
    const w2 = snapshot.nodes.find((node) => node.id === 'w-2')!
    t.ok(w2.lastSeenMsAgo >= 12_000 && w2.lastSeenMsAgo < 13_000, `w-2 seen ${w2.lastSeenMsAgo} ms ago`)
    const a = snapshot.nodes.find((node) => node.id === 'a')!
    t.same({ ...a, lastSeenMsAgo: 0 }, {
      id: 'a',
      hostname: 'a.local',
      ip: '10.0.0.1',
      counts: { downloading: 3, muxing: 1, uploading: 2 },
      lastSeenMsAgo: 0,
    })
    t.ok(a.lastSeenMsAgo < 1_000)
    t.same((await store.readTotals()).totals, { total_downloading: 16, total_muxing: 6, total_uploading: 12 }, 'totals agree')
  })

  t.test('a garbage record is left out, dropped, and the totals recounted', async (t) => {
    const layout = { prefix: 'tornado', shards: 1 }
    const store = new HeartbeatStore(redis, layout, 30_000)
    await store.writeHeartbeat(beat('good', { downloading: 4, muxing: 2, uploading: 1 }))
    await store.writeHeartbeat(beat('bad', { downloading: 9, muxing: 9, uploading: 9 }))
    await raw.set(heartbeatKey(layout, 'bad'), '9|-1|9|0||i-bad|10.0.0.1|bad')
    await raw.zadd(shardKeys(layout, 0).nodes, await redisNowMs(raw), 'no-record')
    const snapshot = await store.listNodes()
    t.same(snapshot.nodes.map((node) => node.id), ['good'])
    t.equal(snapshot.dropped, 2)
    t.same(await raw.zrange(shardKeys(layout, 0).nodes, 0, -1), ['good'])
    t.same((await store.readTotals()).totals, { total_downloading: 4, total_muxing: 2, total_uploading: 1 })
  })

  t.test('a nodes key of the wrong type is recovered from', async (t) => {
    const layout = { prefix: 'tornado', shards: 1 }
    const store = new HeartbeatStore(redis, layout, 30_000)
    await raw.set(shardKeys(layout, 0).nodes, 'not a zset')
    t.same((await store.listNodes()).nodes, [])
    await store.writeHeartbeat(beat('back', { downloading: 1, muxing: 0, uploading: 0 }))
    t.same((await store.listNodes()).nodes.map((node) => node.id), ['back'])
  })
})
