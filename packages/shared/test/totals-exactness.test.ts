import t from 'tap'
import { HeartbeatStore, shardKeys, waitForReady, type JobCounts } from '../src/index.js'
import { privateRedis } from './helper.js'

// Randomized check of the kept totals: after every operation they equal both our model and a full recount.
// Rerun a failure with TORNADO_FUZZ_SEED=<seed printed below>.
const seed = Number(process.env.TORNADO_FUZZ_SEED ?? 20261203)
const OPERATIONS = 1200
const NODES = 50

function mulberry32(state: number) {
  return () => {
    state = (state + 0x6d2b79f5) | 0
    let x = Math.imul(state ^ (state >>> 15), 1 | state)
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296
  }
}

for (const shards of [1, 3]) {
  t.test(`kept totals equal a recount after every step (seed ${seed}, ${shards} shard(s))`, async (t) => {
    const { server, redis, raw } = await privateRedis(t)
    const layout = { prefix: 'fuzz', shards }
    const store = new HeartbeatStore(redis, layout, 30_000)
    const random = mulberry32(seed + shards)
    const pick = (n: number) => Math.floor(random() * n)

    // What the store should hold: live nodes, with the instance that last wrote them.
    const live = new Map<string, { counts: JobCounts; instance: string }>()
    const instances = new Map<string, string>()
    let restarts = 0
    const log: string[] = []

    for (let step = 0; step < OPERATIONS; step++) {
      const nodeId = `node-${pick(NODES)}`
      const instance = instances.get(nodeId) ?? `${nodeId}#0`
      const roll = random()
      let op: string
      if (roll < 0.55) {
        const counts = { downloading: pick(6), muxing: pick(4), uploading: pick(5) }
        op = `beat ${nodeId} ${JSON.stringify(counts)}`
        await store.writeHeartbeat({ nodeId, instanceId: instance, hostname: nodeId, ip: '10.0.0.1', counts, agentTimeMs: 0 })
        live.set(nodeId, { counts, instance })
      } else if (roll < 0.7) {
        const previous = live.get(nodeId)
        op = `repeat ${nodeId}`
        const counts = previous?.counts ?? { downloading: 1, muxing: 1, uploading: 1 }
        await store.writeHeartbeat({ nodeId, instanceId: instance, hostname: nodeId, ip: '10.0.0.1', counts, agentTimeMs: 0 })
        live.set(nodeId, { counts, instance })
      } else if (roll < 0.8) {
        op = `remove ${nodeId}`
        const removed = await store.removeNode(nodeId, instance)
        t.equal(removed, live.has(nodeId), `${op}: removed`)
        live.delete(nodeId)
      } else if (roll < 0.9) {
        op = `stale ${nodeId}`
        const [seconds] = await raw.time()
        const staleScore = Number(seconds) * 1000 - 31_000
        for (let shard = 0; shard < shards; shard++) {
          const nodes = shardKeys(layout, shard).nodes
          if ((await raw.zscore(nodes, nodeId)) !== null) await raw.zadd(nodes, staleScore, nodeId)
        }
        live.delete(nodeId)
      } else if (roll < 0.997) {
        const next = `${nodeId}#${Number(instance.split('#')[1]) + 1}`
        instances.set(nodeId, next)
        const counts = { downloading: pick(3), muxing: pick(3), uploading: pick(3) }
        op = `restart ${nodeId} as ${next} ${JSON.stringify(counts)}`
        await store.writeHeartbeat({ nodeId, instanceId: next, hostname: nodeId, ip: '10.0.0.1', counts, agentTimeMs: 0 })
        live.set(nodeId, { counts, instance: next })
      } else {
        op = 'redis restarted empty'
        restarts++
        await server.restart()
        t.equal(await waitForReady(redis, 5000), true, 'store client reconnects')
        await raw.ping().catch(() => raw.ping())
        live.clear()
      }
      log.push(op)

      const expected = { total_downloading: 0, total_muxing: 0, total_uploading: 0 }
      for (const { counts } of live.values()) {
        expected.total_downloading += counts.downloading
        expected.total_muxing += counts.muxing
        expected.total_uploading += counts.uploading
      }
      const snapshot = await store.readTotals()
      const recount = await store.recount()
      const context = `seed ${seed}, step ${step}: ${op}; last steps: ${log.slice(-5).join(' | ')}`
      if (
        JSON.stringify(snapshot.totals) !== JSON.stringify(expected) ||
        JSON.stringify(recount.recounted) !== JSON.stringify(expected) ||
        snapshot.liveNodes !== live.size
      ) {
        t.same({ kept: snapshot.totals, recounted: recount.recounted, liveNodes: snapshot.liveNodes }, { kept: expected, recounted: expected, liveNodes: live.size }, context)
        return
      }
    }
    t.pass(`${OPERATIONS} operations (${restarts} Redis restarts) kept the totals exact`)
    t.equal(log.length, OPERATIONS)
  })
}
