// Part 1: requests/s and latency of (a) the ceiling, (b) our endpoint with coalescing off, (c) the naive baseline.
import { fork } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import { freePort } from '@tornado/shared/testing'
import { newStore, seedNodes, fmt } from './lib.mjs'

const serverScript = fileURLToPath(new URL('./http-server.mjs', import.meta.url))
const API_KEY = 'sk_bench_0123456789abcdef'

async function load(mode, redisUrl, seconds) {
  const port = await freePort()
  const child = fork(serverScript, [mode, String(port), redisUrl, API_KEY], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  await once(child, 'message')
  try {
    const url = `http://127.0.0.1:${port}${mode === 'app' ? '/dashboard/cluster' : '/bench/cluster'}`
    const check = await fetch(url, { headers: { 'x-api-key': API_KEY } })
    if (check.status !== 200) throw new Error(`${mode}: ${check.status} ${await check.text()}`)
    const result = await autocannon({ url, connections: 100, duration: seconds, headers: { 'x-api-key': API_KEY } })
    return {
      requestsPerSecond: result.requests.average,
      p50: result.latency.p50,
      p99: result.latency.p99,
      non2xx: result.non2xx,
      errors: result.errors + result.timeouts,
      body: await check.json(),
    }
  } finally {
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
}

export async function measureHttp({ server, admin }, fleetSizes, seconds = 10) {
  const rows = []
  for (const nodes of fleetSizes) {
    // A fresh server per fleet size: the naive baseline leaves queued pipelines behind it.
    await server.restart()
    await admin.ping()
    const { redis, store } = await newStore(server.url)
    await seedNodes(store, nodes)
    redis.disconnect()
    const ceiling = await load('ceiling', server.url, seconds)
    const app = await load('app', server.url, seconds)
    const naive = await load('naive', server.url, seconds)
    if (JSON.stringify(app.body) !== JSON.stringify(naive.body)) {
      throw new Error(`the endpoint and the naive sum disagree: ${JSON.stringify(app.body)} vs ${JSON.stringify(naive.body)}`)
    }
    // When every naive request timed out, its rate is below one request per run: the ratio is a lower bound.
    const naiveRate = Math.max(naive.requestsPerSecond, 1 / seconds)
    const row = { nodes, ceiling, app, naive, appOverCeiling: app.requestsPerSecond / ceiling.requestsPerSecond, appOverNaive: app.requestsPerSecond / naiveRate, naiveAllTimedOut: naive.requestsPerSecond === 0 }
    rows.push(row)
    const line = (name, r) => `    ${name.padEnd(26)} ${fmt(r.requestsPerSecond, 0).padStart(7)} req/s  p50 ${r.p50} ms  p99 ${r.p99} ms  (non-2xx ${r.non2xx}, errors ${r.errors})`
    console.log(`  ${nodes} nodes:`)
    console.log(line('(a) ceiling, constant body', ceiling))
    console.log(line('(b) GET /dashboard/cluster', app))
    console.log(line('(c) naive per-request sum', naive))
    console.log(`    b/a = ${fmt(row.appOverCeiling, 2)}   b/c ${row.naiveAllTimedOut ? '>' : '='} ${fmt(row.appOverNaive, 1)}`)
  }
  return rows
}
