// Part 3: N simulated agents beating once a second into one Redis for a while: achieved rate, backlog, Redis CPU.
import { newStore, nodeId, percentile, randomCounts, redisCpuSeconds, seedNodes, fmt } from './lib.mjs'

const SLOTS_PER_SECOND = 100 // beats are spread over the second as real agents' are

export async function measureWriteLoad({ server, admin }, agents, seconds = 10) {
  await admin.flushall() // the private server the benchmark started
  const { redis, store } = await newStore(server.url)
  await seedNodes(store, agents)

  let issued = 0
  let completed = 0
  let failed = 0
  let maxInFlight = 0
  const latencies = []
  const perSlot = agents / SLOTS_PER_SECOND
  const cpuBefore = await redisCpuSeconds(admin)
  const start = performance.now()
  const end = start + seconds * 1000
  let carry = 0
  for (let slot = 0; ; slot++) {
    const target = start + (slot * 1000) / SLOTS_PER_SECOND
    if (target >= end) break
    const wait = target - performance.now()
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
    carry += perSlot
    for (; carry >= 1; carry--) {
      const n = issued++ % agents
      const sentAt = performance.now()
      store
        .writeHeartbeat({ nodeId: nodeId(n), instanceId: `bench-${n}`, hostname: `host-${n}`, ip: '10.0.0.1', counts: randomCounts(), agentTimeMs: Date.now() })
        .then(() => {
          completed++
          latencies.push(performance.now() - sentAt)
        }, () => failed++)
      maxInFlight = Math.max(maxInFlight, issued - completed - failed)
    }
  }
  const issueEnd = performance.now()
  while (completed + failed < issued) await new Promise((resolve) => setTimeout(resolve, 5))
  const drainMs = performance.now() - issueEnd
  const elapsed = (performance.now() - start) / 1000
  const cpu = (await redisCpuSeconds(admin)) - cpuBefore
  const check = await store.recount()
  redis.disconnect()
  latencies.sort((a, b) => a - b)
  const result = {
    latencyP50: percentile(latencies, 50),
    latencyP99: percentile(latencies, 99),
    agents,
    seconds,
    beatsPerSecond: completed / elapsed,
    failed,
    maxInFlight,
    drainMs,
    redisCpuOfOneCore: cpu / elapsed,
    exact: JSON.stringify(check.kept) === JSON.stringify(check.recounted),
  }
  console.log(
    `  ${agents} agents × 1 Hz for ${seconds} s: ${fmt(result.beatsPerSecond, 0)} beats/s achieved, ${failed} failed, ` +
      `beat latency p50 ${fmt(result.latencyP50, 2)} ms p99 ${fmt(result.latencyP99, 2)} ms, at most ${maxInFlight} in flight, last beat done ${fmt(drainMs, 0)} ms after the last was sent; ` +
      `Redis CPU ${fmt(result.redisCpuOfOneCore * 100, 1)}% of one core; kept totals exact: ${result.exact}`,
  )
  return result
}
