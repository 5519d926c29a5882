// Part 2: Redis server time of one totals read and one heartbeat write, by fleet size (INFO commandstats).
import { commandStats, newStore, nodeId, randomCounts, seedNodes, fmt } from './lib.mjs'

/** Gives every node the same counts, so that a repeated beat changes nothing in the totals. */
async function seedSteady(store, nodes, counts) {
  const pending = []
  for (let n = 0; n < nodes; n++) {
    pending.push(store.writeHeartbeat({ nodeId: nodeId(n), instanceId: `bench-${n}`, hostname: `host-${n}`, ip: '10.0.0.1', counts, agentTimeMs: Date.now() }))
    if (pending.length >= 512) await Promise.all(pending.splice(0))
  }
  await Promise.all(pending)
}

const READS = 2000
const WRITES = 5000

export async function measureRedisCost({ server, admin }, fleetSizes) {
  const rows = []
  for (const nodes of fleetSizes) {
    await admin.flushall() // the private server the benchmark started
    const { redis, store } = await newStore(server.url)
    await seedNodes(store, nodes)
    await store.readTotals() // loads the script; nothing to prune afterwards

    await admin.config('RESETSTAT')
    for (let i = 0; i < READS; i++) await store.readTotals()
    const read = await commandStats(admin, 'evalsha')

    // Most beats repeat the node's counts (jobs take seconds to minutes); the worst case changes all three.
    const writeCost = async (countsFor) => {
      await admin.config('RESETSTAT')
      for (let i = 0; i < WRITES; i++) {
        const n = Math.floor(Math.random() * nodes)
        await store.writeHeartbeat({ nodeId: nodeId(n), instanceId: `bench-${n}`, hostname: `host-${n}`, ip: '10.0.0.1', counts: countsFor(n), agentTimeMs: Date.now() })
      }
      return commandStats(admin, 'evalsha')
    }
    const steady = { downloading: 2, muxing: 1, uploading: 1 }
    await seedSteady(store, nodes, steady)
    const write = await writeCost(() => steady)
    const writeChanged = await writeCost(() => randomCounts())

    // The naive read for comparison: every record, summed (a Lua loop, so it is Redis time alone).
    await admin.config('RESETSTAT')
    const naiveReads = nodes >= 100_000 ? 20 : 100
    for (let i = 0; i < naiveReads; i++) {
      await admin.eval(
        "local s={0,0,0} for _,id in ipairs(redis.call('ZRANGE',KEYS[1],0,-1)) do local d,m,u=string.match(redis.call('GET',KEYS[2]..id) or '','^(%d+)|(%d+)|(%d+)|') s[1]=s[1]+(tonumber(d) or 0) s[2]=s[2]+(tonumber(m) or 0) s[3]=s[3]+(tonumber(u) or 0) end return s",
        2,
        '{bench:0}:nodes',
        '{bench:0}:node:',
      )
    }
    const naive = await commandStats(admin, 'eval')
    const check = await store.recount()
    rows.push({
      nodes,
      readUsec: read.usecPerCall,
      writeUsec: write.usecPerCall,
      writeChangedUsec: writeChanged.usecPerCall,
      naiveUsec: naive.usecPerCall,
      exact: JSON.stringify(check.kept) === JSON.stringify(check.recounted),
    })
    redis.disconnect()
    console.log(
      `  ${nodes} nodes: totals read ${fmt(read.usecPerCall, 2)} µs, heartbeat write ${fmt(write.usecPerCall, 2)} µs (counts changed: ${fmt(writeChanged.usecPerCall, 2)} µs), ` +
        `naive Lua sum ${fmt(naive.usecPerCall, 0)} µs (${fmt(naive.usecPerCall / read.usecPerCall, 0)}× the read); kept totals exact: ${rows.at(-1).exact}`,
    )
  }
  return rows
}
