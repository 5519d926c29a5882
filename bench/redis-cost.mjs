// Part 2: Redis server time of one totals read and one heartbeat write, by fleet size (INFO commandstats).
import { commandStats, newStore, nodeId, randomCounts, seedNodes, fmt } from './lib.mjs'

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

    await admin.config('RESETSTAT')
    for (let i = 0; i < WRITES; i++) {
      const n = Math.floor(Math.random() * nodes)
      await store.writeHeartbeat({
        nodeId: nodeId(n),
        instanceId: `bench-${n}`,
        hostname: `host-${n}`,
        ip: '10.0.0.1',
        counts: randomCounts(),
        agentTimeMs: Date.now(),
      })
    }
    const write = await commandStats(admin, 'evalsha')

    // The naive read for comparison: every record, summed (a Lua loop, so it is Redis time alone).
    await admin.config('RESETSTAT')
    const naiveReads = nodes >= 100_000 ? 20 : 100
    for (let i = 0; i < naiveReads; i++) {
      await admin.eval(
        "local s={0,0,0} for _,id in ipairs(redis.call('ZRANGE',KEYS[1],0,-1)) do local f=redis.call('HMGET',KEYS[2]..id,'downloading','muxing','uploading') for j=1,3 do s[j]=s[j]+(tonumber(f[j]) or 0) end end return s",
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
      naiveUsec: naive.usecPerCall,
      exact: JSON.stringify(check.kept) === JSON.stringify(check.recounted),
    })
    redis.disconnect()
    console.log(
      `  ${nodes} nodes: totals read ${fmt(read.usecPerCall, 2)} µs, heartbeat write ${fmt(write.usecPerCall, 2)} µs, ` +
        `naive Lua sum ${fmt(naive.usecPerCall, 0)} µs (${fmt(naive.usecPerCall / read.usecPerCall, 0)}× the read); kept totals exact: ${rows.at(-1).exact}`,
    )
  }
  return rows
}
