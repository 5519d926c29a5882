// Part 4: one real agent at 1 Hz: its RSS and CPU, and its heartbeat period as Redis's clock saw it.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { freePort } from '@tornado/shared/testing'
import { HeartbeatStore } from '@tornado/shared'
import { PREFIX, fmt, percentile } from './lib.mjs'

const agentBin = fileURLToPath(new URL('../packages/agent/dist/bin.js', import.meta.url))
const CLOCK_TICKS = 100 // USER_HZ on Linux

function processStats(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS
  const rssKb = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1])
  return { cpuSeconds, rssMb: rssKb / 1024 }
}

export async function measureAgent({ server, admin }, seconds = 60) {
  await admin.flushall() // the private server the benchmark started
  const nodeId = 'bench-agent'
  // The time the beat script stamped on the node (Redis's clock), polled every 20 ms.
  const store = new HeartbeatStore(admin, { prefix: PREFIX, shards: 1 }, 60_000)
  const seen = []
  let polling = true
  const poller = (async () => {
    while (polling) {
      const node = await store.readNode(nodeId)
      if (node && node.lastSeenMs !== seen.at(-1)) seen.push(node.lastSeenMs)
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })()

  const agent = spawn(process.execPath, [agentBin], {
    env: {
      ...process.env,
      REDIS_URL: server.url,
      TORNADO_PREFIX: PREFIX,
      TORNADO_NODE_ID: nodeId,
      AGENT_LISTEN: `127.0.0.1:${await freePort()}`,
      HEARTBEAT_INTERVAL_MS: '1000',
      LOG_LEVEL: 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
  // Let start-up (module loading, first host scan) pass before measuring the steady state.
  await new Promise((resolve) => setTimeout(resolve, 3000))
  const before = processStats(agent.pid)
  const startedAt = performance.now()
  let maxRss = before.rssMb
  while (performance.now() - startedAt < seconds * 1000) {
    await new Promise((resolve) => setTimeout(resolve, 1000))
    maxRss = Math.max(maxRss, processStats(agent.pid).rssMb)
  }
  const after = processStats(agent.pid)
  const elapsed = (performance.now() - startedAt) / 1000
  agent.kill('SIGTERM')
  const [exitCode] = await once(agent, 'exit')
  polling = false
  await poller

  const periods = seen.slice(1).map((t, i) => t - seen[i]).filter((p) => p > 0)
  const sorted = [...periods].sort((a, b) => a - b)
  const beats = seen.filter((t) => t >= seen[0]).length
  // Drift: where the last beat landed against where a perfect 1 Hz clock started at the first beat would put it.
  const driftMs = seen.length > 1 ? seen.at(-1) - seen[0] - (seen.length - 1) * 1000 : NaN
  const result = {
    seconds: elapsed,
    rssMb: after.rssMb,
    maxRssMb: maxRss,
    cpuPercentOfOneCore: ((after.cpuSeconds - before.cpuSeconds) / elapsed) * 100,
    beats,
    periodP50: percentile(sorted, 50),
    periodP99: percentile(sorted, 99),
    periodMin: sorted[0],
    periodMax: sorted.at(-1),
    driftMs,
    exitCode,
  }
  console.log(
    `  agent for ${fmt(elapsed, 0)} s: RSS ${fmt(result.rssMb)} MB (max ${fmt(maxRss)}), CPU ${fmt(result.cpuPercentOfOneCore, 2)}% of one core; ` +
      `${seen.length} beats, period p50 ${result.periodP50} ms, p99 ${result.periodP99} ms (min ${result.periodMin}, max ${result.periodMax}), ` +
      `drift over the run ${driftMs} ms; exit code ${exitCode}`,
  )
  return result
}
