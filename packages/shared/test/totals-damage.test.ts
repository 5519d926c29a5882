import t from 'tap'
import { HeartbeatStore, heartbeatKey, shardKeys, type JobCounts, type NodeHeartbeat } from '../src/index.js'
import { privateRedis, redisNowMs } from './helper.js'

// Damage from outside that the scripts once missed: a deleted totals key or node set, odd number forms, and records
// or scores from the future. Each case asserts the exact totals and the dropped count reported.
const layout = { prefix: 'dmg', shards: 1 }
const keys = shardKeys(layout, 0)
const totals = (d: number, m: number, u: number) => ({ total_downloading: d, total_muxing: m, total_uploading: u })

const beat = (nodeId: string, counts: JobCounts, instanceId = `i-${nodeId}`): NodeHeartbeat => ({
  nodeId,
  instanceId,
  hostname: `${nodeId}.local`,
  ip: '10.0.0.1',
  counts,
  agentTimeMs: 1,
})

t.test('damage from outside on a real redis-server', async (t) => {
  const { redis, raw } = await privateRedis(t)
  const store = new HeartbeatStore(redis, layout, 30_000)

  t.beforeEach(async () => {
    await raw.flushall() // the private server this test started
  })

  const twoNodes = async () => {
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
  }

  t.test('a deleted totals key is recounted by the next read', async (t) => {
    await twoNodes()
    await raw.del(keys.totals)
    const read = await store.readTotals()
    t.same(read.totals, totals(5, 1, 5))
    t.equal(read.dropped, 1, 'the missing totals key counts as one dropped')
    const again = await store.readTotals()
    t.same(again.totals, totals(5, 1, 5))
    t.equal(again.dropped, 0)
  })

  t.test('a deleted totals key is recounted by the next beat that changes counts, not drifted', async (t) => {
    await twoNodes()
    await raw.del(keys.totals)
    const up = await store.writeHeartbeat(beat('a', { downloading: 4, muxing: 1, uploading: 0 }))
    t.equal(up.dropped, 1)
    t.same((await store.readTotals()).totals, totals(6, 1, 5))

    await raw.del(keys.totals)
    const down = await store.writeHeartbeat(beat('a', { downloading: 1, muxing: 1, uploading: 0 }))
    t.equal(down.dropped, 1, 'a decrease: the recreated sum went negative')
    t.same((await store.readTotals()).totals, totals(3, 1, 5))

    await raw.del(keys.totals)
    const joined = await store.writeHeartbeat(beat('c', { downloading: 1, muxing: 1, uploading: 1 }))
    t.equal(joined.dropped, 1, 'a new node whose counts alone recreated every sum')
    const read = await store.readTotals()
    t.same(read.totals, totals(4, 2, 6))
    t.equal(read.dropped, 0)
  })

  t.test('a deleted totals key found by a stale node\'s pruning or a removal', async (t) => {
    await twoNodes()
    await raw.del(keys.totals)
    await raw.zadd(keys.nodes, (await redisNowMs(raw)) - 31_000, 'b')
    const read = await store.readTotals()
    t.same(read.totals, totals(3, 1, 0))
    t.equal(read.pruned, 1)
    t.equal(read.dropped, 1)

    await raw.del(keys.totals)
    t.equal(await store.removeNode('a', 'i-a'), true)
    const after = await store.readTotals()
    t.same(after.totals, totals(0, 0, 0))
    t.equal(after.dropped, 0)
  })

  t.test('no totals key in an empty shard, or with idle nodes only, is zero: nothing dropped', async (t) => {
    const empty = await store.readTotals()
    t.same(empty.totals, totals(0, 0, 0))
    t.equal(empty.dropped, 0)
    t.equal(await raw.exists(keys.totals), 0, 'an empty shard is not recounted')
    await store.writeHeartbeat(beat('idle', { downloading: 0, muxing: 0, uploading: 0 }))
    const idle = await store.readTotals()
    t.same(idle.totals, totals(0, 0, 0))
    t.equal(idle.dropped, 0)
    await store.writeHeartbeat(beat('busy', { downloading: 2, muxing: 0, uploading: 0 }))
    const busy = await store.readTotals()
    t.same(busy.totals, totals(2, 0, 0))
    t.equal(busy.dropped, 0, 'the first counts of a shard are no damage')
  })

  t.test('a deleted node set does not count a returning node twice', async (t) => {
    await twoNodes()
    await raw.del(keys.nodes)
    const back = await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    t.equal(back.dropped, 0, 'nothing garbage: only a recount')
    t.equal(back.previousInstanceId, 'i-a')
    t.same((await store.readTotals()).totals, totals(3, 1, 0), 'b is out until its next beat')
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    await store.writeHeartbeat(beat('a', { downloading: 3, muxing: 1, uploading: 0 }))
    t.same((await store.readTotals()).totals, totals(5, 1, 5))
    t.same((await store.recount()).recounted, totals(5, 1, 5))
  })

  t.test('a member removed from outside does not count twice when it beats again', async (t) => {
    await twoNodes()
    await raw.zrem(keys.nodes, 'a')
    await store.writeHeartbeat(beat('a', { downloading: 4, muxing: 1, uploading: 0 }))
    t.same((await store.readTotals()).totals, totals(6, 1, 5))
    await store.writeHeartbeat(beat('a', { downloading: 4, muxing: 1, uploading: 0 }))
    t.same((await store.readTotals()).totals, totals(6, 1, 5))
  })

  t.test('a node pruned or removed comes back with its full counts, once', async (t) => {
    await twoNodes()
    await raw.zadd(keys.nodes, (await redisNowMs(raw)) - 31_000, 'b')
    t.same((await store.readTotals()).totals, totals(3, 1, 0))
    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    t.same((await store.readTotals()).totals, totals(5, 1, 5))
    t.equal(await store.removeNode('a', 'i-a'), true)
    await store.writeHeartbeat(beat('a', { downloading: 1, muxing: 0, uploading: 0 }))
    t.same((await store.readTotals()).totals, totals(3, 0, 5))
  })

  t.test('a removal of a node that is no member takes its record out, and the totals leave its counts out', async (t) => {
    await twoNodes()
    await raw.zrem(keys.nodes, 'a') // its counts are still in the totals
    t.equal(await store.removeNode('a', 'other'), false, 'another instance\'s record is left alone')
    t.equal(await store.removeNode('a', 'i-a'), true)
    t.equal(await raw.exists(heartbeatKey(layout, 'a')), 0)
    t.same((await store.readTotals()).totals, totals(2, 0, 5))
    t.equal(await store.removeNode('a', 'i-a'), false)
  })

  t.test('totals fields in any form but plain decimal digits are garbage, recounted', async (t) => {
    await twoNodes()
    for (const odd of ['0x10', '1e3', ' 7', '5.0', '-0', '+5', '007', '5 ']) {
      await raw.hset(keys.totals, 'downloading', odd)
      const read = await store.readTotals()
      t.same(read.totals, totals(5, 1, 5), `downloading '${odd}'`)
      t.equal(read.dropped, 1, `downloading '${odd}' counts as one dropped`)
    }
    await raw.hdel(keys.totals, 'muxing')
    const partial = await store.readTotals()
    t.same(partial.totals, totals(5, 1, 5), 'a sum deleted from a recounted key')
    t.equal(partial.dropped, 1)
  })

  t.test('a record with a seen time from the future is garbage', async (t) => {
    await twoNodes()
    const now = await redisNowMs(raw)
    await raw.set(heartbeatKey(layout, 'b'), `2|0|5|${now + 3_600_000}||i-b|10.0.0.1|b.local`)
    const recount = await store.recount()
    t.same(recount.recounted, totals(3, 1, 0))
    t.equal(recount.dropped, 1)
    await raw.set(heartbeatKey(layout, 'a'), `3|1|0|${now + 30_000}||i-a|10.0.0.1|a.local`)
    t.same((await store.recount()).recounted, totals(3, 1, 0), 'within the tolerance for a clock stepped back')
    t.same((await store.listNodes()).nodes.map((node) => node.id), ['a'])
  })

  t.test('a ghost record from the future is dropped when the node set is rebuilt', async (t) => {
    await twoNodes()
    await raw.set(`${keys.nodePrefix}ghost`, '7|7|7|99999999999999999999||i|ip|h')
    await raw.del(keys.nodes)
    await raw.set(keys.nodes, 'not a zset')
    const read = await store.readTotals()
    t.same(read.totals, totals(5, 1, 5))
    t.equal(read.dropped, 2, 'the node set and the ghost')
    t.equal(await raw.exists(`${keys.nodePrefix}ghost`), 0)
    t.same((await raw.zrange(keys.nodes, 0, -1)).sort(), ['a', 'b'])
  })

  t.test('a member scored in the future is dropped by reads; ages stay safe integers', async (t) => {
    await twoNodes()
    await raw.zadd(keys.nodes, 1e20, 'b')
    const list = await store.listNodes()
    t.same(list.nodes.map((node) => node.id), ['a'])
    t.equal(list.dropped, 1)
    t.ok(list.nodes.every((node) => Number.isSafeInteger(node.lastSeenMsAgo)))
    t.same((await store.readTotals()).totals, totals(3, 1, 0))

    await store.writeHeartbeat(beat('b', { downloading: 2, muxing: 0, uploading: 5 }))
    await raw.zadd(keys.nodes, '+inf', 'b')
    const read = await store.readTotals()
    t.same(read.totals, totals(3, 1, 0))
    t.equal(read.dropped, 1)
    t.equal(read.liveNodes, 1)
  })

  // The totals hold how many members' counts they sum; a node set that lost members from outside disagrees with it.
  const fleet = async (n: number, counts: (i: number) => JobCounts) => {
    for (let i = 0; i < n; i += 250) {
      await Promise.all(
        Array.from({ length: Math.min(250, n - i) }, (_, j) => store.writeHeartbeat(beat(`n${i + j}`, counts(i + j)))),
      )
    }
  }

  t.test('a deleted node set with no beats after it: the next read is zero and reports it', async (t) => {
    await fleet(200, () => ({ downloading: 1, muxing: 2, uploading: 3 }))
    t.same((await store.readTotals()).totals, totals(200, 400, 600))
    await raw.del(keys.nodes)
    const read = await store.readTotals()
    t.same(read.totals, totals(0, 0, 0))
    t.equal(read.liveNodes, 0)
    t.equal(read.dropped, 1, 'the lost members count as one dropped')
    const again = await store.readTotals()
    t.same(again.totals, totals(0, 0, 0))
    t.equal(again.dropped, 0)
    t.same((await store.listNodes()).nodes, [])
  })

  t.test('a member removed from outside whose agent never beats again leaves the totals', async (t) => {
    await fleet(3, (i) => ({ downloading: i + 1, muxing: 10 * (i + 1), uploading: 100 * (i + 1) }))
    t.same((await store.readTotals()).totals, totals(6, 60, 600))
    await raw.zrem(keys.nodes, 'n1')
    const read = await store.readTotals()
    t.same(read.totals, totals(4, 40, 400), 'exactly n1\'s counts out')
    t.equal(read.dropped, 1)
    const again = await store.readTotals()
    t.same(again.totals, totals(4, 40, 400))
    t.equal(again.dropped, 0)
  })

  t.test('pruning, removal and joins keep members exact: no damage reported where there is none', async (t) => {
    await fleet(4, () => ({ downloading: 1, muxing: 0, uploading: 0 }))
    await store.writeHeartbeat(beat('idle', { downloading: 0, muxing: 0, uploading: 0 }))
    const now = await redisNowMs(raw)
    await raw.zadd(keys.nodes, now - 31_000, 'n0', now - 31_000, 'idle')
    const pruned = await store.readTotals()
    t.same(pruned.totals, totals(3, 0, 0))
    t.equal(pruned.pruned, 2)
    t.equal(pruned.dropped, 0)
    t.equal(await store.removeNode('n1', 'i-n1'), true)
    await store.writeHeartbeat(beat('n0', { downloading: 2, muxing: 0, uploading: 0 }))
    const read = await store.readTotals()
    t.same(read.totals, totals(4, 0, 0))
    t.equal(read.dropped, 0)
    t.same(await raw.hget(keys.totals, 'members'), '3')
  })

  // EVALSHA calls and their mean Redis time (µs) since the last CONFIG RESETSTAT, from INFO commandstats.
  const evalshaStats = async () => {
    const line = (await raw.info('commandstats')).split('\n').find((l) => l.startsWith('cmdstat_evalsha:'))
    const stat = Object.fromEntries((line ?? '').slice('cmdstat_evalsha:'.length).trim().split(',').map((kv) => kv.split('=')))
    return { calls: Number(stat.calls ?? 0), usecPerCall: Number(stat.usec_per_call ?? 0) }
  }

  t.test('a deleted node set of 2,000 nodes comes back with O(1) beats, totals exact', async (t) => {
    const n = 2000
    const counts = (i: number) => ({ downloading: i % 3, muxing: i % 5, uploading: i % 7 })
    await fleet(n, counts)
    // The same beats on the undamaged shard, then after the damage, each measured on this private server.
    await raw.config('RESETSTAT')
    await fleet(n, counts)
    const undamaged = await evalshaStats()
    t.equal(undamaged.calls, n)

    await raw.del(keys.nodes)
    await raw.config('RESETSTAT')
    let dropped = 0
    for (let i = 0; i < n; i += 250) {
      const results = await Promise.all(
        Array.from({ length: Math.min(250, n - i) }, (_, j) => store.writeHeartbeat(beat(`n${i + j}`, counts(i + j)))),
      )
      for (const result of results) dropped += result.dropped
    }
    const damaged = await evalshaStats()
    t.equal(damaged.calls, n)
    t.comment(`EVALSHA mean: ${undamaged.usecPerCall} µs per beat undamaged, ${damaged.usecPerCall} µs per beat after DEL of the node set`)
    t.ok(damaged.usecPerCall < 5 * undamaged.usecPerCall, 'beats after the damage are O(1), like any other')

    const read = await store.readTotals()
    dropped += read.dropped
    const list = await store.listNodes()
    t.equal(list.nodes.length, n)
    const listed = list.nodes.reduce(
      (sum, node) => totals(
        sum.total_downloading + node.counts.downloading,
        sum.total_muxing + node.counts.muxing,
        sum.total_uploading + node.counts.uploading,
      ),
      totals(0, 0, 0),
    )
    t.same(read.totals, listed, 'the totals are the sums of the listed nodes')
    t.same(read.totals, totals(1999, 4000, 5995))
    t.equal(read.liveNodes, n)
    t.ok(dropped >= 1, `the damage is reported (dropped ${dropped})`)
    const again = await store.readTotals()
    t.same(again.totals, listed)
    t.equal(again.dropped, 0)
  })
})
