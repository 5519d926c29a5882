import t from 'tap'
import { createRedisClient, waitForReady, HeartbeatStore, shardKeys, shardOf, heartbeatKey, type NodeHeartbeat, type JobCounts } from '../src/index.js'
import { privateRedis } from './helper.js'

const layout = { prefix: 'tornado', shards: 1 }
const keys = shardKeys(layout, 0)

const beat = (nodeId: string, counts: JobCounts, instanceId = `i-${nodeId}`): NodeHeartbeat => ({
  nodeId,
  instanceId,
  hostname: `${nodeId}.local`,
  ip: '10.0.0.1',
  counts,
  agentTimeMs: Date.now(),
})

t.test('heartbeat store on a real redis-server', async (t) => {
  const { server, redis, raw } = await privateRedis(t)
  const store = new HeartbeatStore(redis, layout, 30_000)

  t.beforeEach(async () => {
    await raw.flushall() // the private server this test started
  })

  t.test('fresh nodes: those seen within freshWithinMs, on the Redis clock', async (t) => {
    for (const id of ['a', 'b', 'c']) await store.writeHeartbeat(beat(id, { downloading: 1, muxing: 0, uploading: 0 }))
    const [seconds, micros] = await raw.time()
    const nowMs = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000)
    await raw.zadd(keys.nodes, nowMs - 10_000, 'b')
    await raw.zadd(keys.nodes, nowMs - 20_000, 'c')
    const pick = ({ liveNodes, freshNodes }: { liveNodes: number; freshNodes: number }) => ({ liveNodes, freshNodes })
    t.same(pick(await store.readTotals(5_000)), { liveNodes: 3, freshNodes: 1 })
    t.same(pick(await store.readTotals(15_000)), { liveNodes: 3, freshNodes: 2 })
    t.same(pick(await store.readTotals()), { liveNodes: 3, freshNodes: 3 }, 'by default every live node is fresh')
  })

  t.test('sums nodes and applies changes as deltas', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    t.same((await store.readTotals()).totals, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
    await store.writeHeartbeat(beat('a', { downloading: 0, muxing: 2, uploading: 1 }))
    await store.writeHeartbeat(beat('a', { downloading: 0, muxing: 2, uploading: 1 }))
    const snapshot = await store.readTotals()
    t.same(snapshot.totals, { total_downloading: 2, total_muxing: 2, total_uploading: 6 })
    t.equal(snapshot.liveNodes, 2)
    const stored = await store.readNode('a')
    const [seconds] = await raw.time()
    t.ok(Math.abs(stored!.lastSeenMs - Number(seconds) * 1000) < 2000, 'last seen on the Redis clock')
    t.same(stored, {
      nodeId: 'a',
      instanceId: 'i-a',
      hostname: 'a.local',
      ip: '10.0.0.1',
      counts: { downloading: 0, muxing: 2, uploading: 1 },
      agentTimeMs: stored!.agentTimeMs,
      lastSeenMs: stored!.lastSeenMs,
    })
    t.match(await raw.get(heartbeatKey(layout, 'a')), /^0\|2\|1\|\d+\|\d+\|i-a\|10\.0\.0\.1\|a\.local$/)
  })

  t.test('a node last seen 31 s ago (Redis clock) is pruned and leaves the totals', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    const [seconds] = await raw.time()
    await raw.zadd(keys.nodes, Number(seconds) * 1000 - 31_000, 'b')
    const snapshot = await store.readTotals()
    t.same(snapshot.totals, { total_downloading: 3, total_muxing: 1, total_uploading: 0 })
    t.equal(snapshot.pruned, 1)
    t.equal(await raw.exists(heartbeatKey(layout, 'b')), 0)
  })

  t.test('a node 29 s old still counts', async (t) => {
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    const [seconds] = await raw.time()
    await raw.zadd(keys.nodes, Number(seconds) * 1000 - 29_000, 'b')
    t.same((await store.readTotals()).totals, { total_downloading: 2, total_muxing: 0, total_uploading: 5 })
  })

  t.test('removal takes a node out at once, but only its own instance', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }, 'first'))
    t.equal(await store.removeNode('a', 'other'), false)
    t.same((await store.readTotals()).totals, { total_downloading: 3, total_muxing: 1, total_uploading: 0 })
    t.equal(await store.removeNode('a', 'first'), true)
    t.same((await store.readTotals()).totals, { total_downloading: 0, total_muxing: 0, total_uploading: 0 })
    t.equal(await store.removeNode('a', 'first'), false)
  })

  t.test('a beat reports the instance that wrote the record before', async (t) => {
    const first = await store.writeHeartbeat(beat('a', { downloading: 1, muxing: 0, uploading: 0 }, 'one'))
    t.equal(first.previousInstanceId, '')
    t.equal(first.previousAgeMs, -1)
    const second = await store.writeHeartbeat(beat('a', { downloading: 1, muxing: 0, uploading: 0 }, 'two'))
    t.equal(second.previousInstanceId, 'one')
    t.ok(second.previousAgeMs >= 0 && second.previousAgeMs < 1000)
    t.same((await store.readTotals()).totals, { total_downloading: 1, total_muxing: 0, total_uploading: 0 })
  })

  t.test('bad counts are refused before anything is written', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 1, muxing: 0, uploading: 0 }))
    await t.rejects(store.writeHeartbeat(beat('a', { downloading: -1, muxing: 0, uploading: 0 })), /counts must be integers/)
    await t.rejects(store.writeHeartbeat(beat('a', { downloading: 1.5, muxing: 0, uploading: 0 })), /counts must be integers/)
    t.same((await store.readTotals()).totals, { total_downloading: 1, total_muxing: 0, total_uploading: 0 })
  })

  t.test('garbage under the prefix is dropped and the good nodes stay exact', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    await store.writeHeartbeat(beat('c', { downloading: 1, muxing: 1, uploading: 1 }))
    await raw.set(heartbeatKey(layout, 'c'), '1|-5|1|0||i-c|10.0.0.1|c.local')
    // c is a live member whose record turned to garbage: reads stay O(1), so it is found by its next beat,
    // its pruning or a recount
    const recount = await store.recount()
    t.equal(recount.dropped, 1)
    t.same(recount.recounted, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
    t.same((await store.readTotals()).totals, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })

    await raw.del(keys.totals)
    await raw.set(keys.totals, 'not a hash')
    const healed = await store.readTotals()
    t.same(healed.totals, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
    t.equal(healed.dropped, 1, 'the totals key of the wrong type counts as dropped')

    await raw.hset(keys.totals, 'downloading', '1e300')
    const huge = await store.readTotals()
    t.same(huge.totals, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
    t.equal(huge.dropped, 1)

    await raw.del(heartbeatKey(layout, 'b'))
    await raw.set(heartbeatKey(layout, 'b'), 'wrong type')
    const [seconds] = await raw.time()
    await raw.zadd(keys.nodes, Number(seconds) * 1000 - 60_000, 'b')
    const pruned = await store.readTotals()
    t.equal(pruned.dropped, 1)
    t.same(pruned.totals, { total_downloading: 3, total_muxing: 1, total_uploading: 0 })

    const back = await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    t.equal(back.previousInstanceId, '')
    t.same((await store.readTotals()).totals, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
  })

  t.test('a node set of the wrong type is rebuilt from the records: no good node is lost', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    await raw.set(`${keys.nodePrefix}junk`, '{"downloading":')
    await raw.del(keys.nodes)
    await raw.set(keys.nodes, 'not a zset')
    const read = await store.readTotals()
    t.same(read.totals, { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
    t.equal(read.dropped, 2, 'the node set and the garbage record found while rebuilding it')
    t.same((await raw.zrange(keys.nodes, 0, -1)).sort(), ['a', 'b'])
    t.equal(await raw.exists(`${keys.nodePrefix}junk`), 0)
    const stored = await store.readNode('b')
    t.ok(stored && stored.lastSeenMs === Number((await raw.get(heartbeatKey(layout, 'b')))!.split('|')[3]), 'last seen as the record says')

    // The same damage found by a beat rather than a read.
    await raw.del(keys.nodes)
    await raw.hset(keys.nodes, 'a', '1')
    const result = await store.writeHeartbeat(beat('a', { downloading: 4, muxing: 1, uploading: 0 }))
    t.equal(result.dropped, 1)
    t.same((await store.readTotals()).totals, { total_downloading: 6, total_muxing: 1, total_uploading: 5 })
    t.same((await raw.zrange(keys.nodes, 0, -1)).sort(), ['a', 'b'])
  })

  t.test('a user who may not SCAN: a node set of the wrong type is emptied, and each node rejoins with its beat', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    await raw.call('ACL', 'SETUSER', 'no-scan', 'reset', 'on', '>no-scan-pw', '~*', '+@all', '-scan')
    t.teardown(() => raw.call('ACL', 'DELUSER', 'no-scan'))
    const limited = createRedisClient(`redis://no-scan:no-scan-pw@127.0.0.1:${server.port}`)
    t.teardown(() => limited.disconnect())
    t.equal(await waitForReady(limited, 5000), true)
    const limitedStore = new HeartbeatStore(limited, layout, 30_000)
    await raw.del(keys.nodes)
    await raw.set(keys.nodes, 'not a zset')

    const result = await limitedStore.writeHeartbeat(beat('a', { downloading: 4, muxing: 1, uploading: 0 }))
    t.equal(result.dropped, 1, 'the node set of the wrong type')
    t.same((await raw.zrange(keys.nodes, 0, -1)).sort(), ['a'], 'emptied, not rebuilt; the beating node is back')
    t.same((await limitedStore.readTotals()).totals, { total_downloading: 4, total_muxing: 1, total_uploading: 0 })
    await limitedStore.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    t.same((await limitedStore.readTotals()).totals, { total_downloading: 6, total_muxing: 1, total_uploading: 5 }, 'b rejoined with its beat')
    t.same(await raw.call('ACL', 'LOG'), [], 'nothing was refused: the scripts asked first')
  })

  t.test('a record key of the wrong type counts as one dropped, whether or not its node was a member', async (t) => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await raw.del(heartbeatKey(layout, 'a'))
    await raw.hset(heartbeatKey(layout, 'a'), 'downloading', '3')
    t.equal((await store.writeHeartbeat(beat('a', { downloading: 1, muxing: 1, uploading: 0 }))).dropped, 1)
    await raw.hset(heartbeatKey(layout, 'new'), 'downloading', '3')
    t.equal((await store.writeHeartbeat(beat('new', { downloading: 2, muxing: 0, uploading: 0 }))).dropped, 1)
    t.same((await store.readTotals()).totals, { total_downloading: 3, total_muxing: 1, total_uploading: 0 })
  })
})

// Every agent and API of a fleet, of any version, must put a node in the same group: a changed hash would split a
// node's records over two groups during a rolling upgrade and count it twice. These values are FNV-1a's, fixed.
t.test('shardOf is a fixed function of the id (FNV-1a of its UTF-16 code units)', async (t) => {
  const pinned: [string, number, number][] = [
    ['node-a', 2, 3],
    ['node-b', 1, 6],
    ['worker-17', 2, 14],
    ['ip-10-0-3-17', 0, 14],
    ['ünïcode', 0, 5],
  ]
  for (const [id, ofThree, ofSixteen] of pinned) {
    t.equal(shardOf(id, 3), ofThree, `${id} of 3`)
    t.equal(shardOf(id, 16), ofSixteen, `${id} of 16`)
    t.equal(shardOf(id, 1), 0, `${id} of 1`)
  }
  t.equal(heartbeatKey({ prefix: 'tornado', shards: 3 }, 'node-a'), '{tornado:2}:node:node-a')
})
