// npm run bench [-- --nodes 1000,10000,100000 --parts http,redis,writes,agent --agent-seconds 60 --out BENCHMARKS.md]
// Every figure is printed next to a baseline measured in the same run, on the same machine.
import { parseArgs } from 'node:util'
import { writeFileSync } from 'node:fs'
import { startRedis, machine } from './lib.mjs'
import { measureRedisCost } from './redis-cost.mjs'
import { measureWriteLoad } from './write-load.mjs'
import { measureAgent } from './agent-overhead.mjs'
import { measureHttp } from './http.mjs'
import { renderReport } from './report.mjs'

const { values } = parseArgs({
  options: {
    nodes: { type: 'string', default: '1000,10000,100000' },
    parts: { type: 'string', default: 'redis,http,writes,agent' },
    'http-seconds': { type: 'string', default: '10' },
    'write-seconds': { type: 'string', default: '10' },
    'write-agents': { type: 'string', default: '10000' },
    'agent-seconds': { type: 'string', default: '60' },
    out: { type: 'string' },
  },
})
const fleetSizes = values.nodes.split(',').map(Number)
const parts = new Set(values.parts.split(','))
const results = { machine: machine(), date: new Date().toISOString(), command: `npm run bench -- ${process.argv.slice(2).join(' ')}`.trim() }

const redis = await startRedis()
// Each part starts on a fresh, empty server: the naive baseline leaves Redis working through queued pipelines
// long after its HTTP run ends, which would stall whatever is measured next.
async function freshRedis() {
  await redis.server.restart()
  await redis.admin.ping()
}
try {
  console.log(`machine: ${results.machine}`)
  if (parts.has('redis')) {
    console.log('\n2. Redis time per call (INFO commandstats usec_per_call)')
    results.redis = await measureRedisCost(redis, fleetSizes)
  }
  if (parts.has('http')) {
    console.log(`\n1. HTTP, autocannon 100 connections × ${values['http-seconds']} s each`)
    await freshRedis()
    results.http = await measureHttp(redis, fleetSizes, Number(values['http-seconds']))
  }
  if (parts.has('writes')) {
    console.log('\n3. Write load')
    await freshRedis()
    results.writes = await measureWriteLoad(redis, Number(values['write-agents']), Number(values['write-seconds']))
  }
  if (parts.has('agent')) {
    console.log('\n4. One real agent at 1 Hz')
    await freshRedis()
    results.agent = await measureAgent(redis, Number(values['agent-seconds']))
  }
} finally {
  redis.admin.disconnect()
  await redis.server.stop()
}
if (values.out) {
  writeFileSync(values.out, renderReport(results))
  console.log(`\nwrote ${values.out}`)
}
