#!/usr/bin/env node
// What one process scan costs with 500 extra processes running: the agent's ProcessTable (back to back, cold, and
// at one scan a second once V8 has compiled it), the same full read through fs.promises,
// systeminformation.processes(), and a whole agent with and without --watch-processes.
// Run after `npx tsc -b`: node packages/agent/bench/process-scan.mjs [extra-processes] [seconds-per-window]
// (about 10 windows in all; the default of 30 s takes about six minutes).
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { open, readdir } from 'node:fs/promises'
import { readFileSync } from 'node:fs'
import { cpus } from 'node:os'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import si from 'systeminformation'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { DEFAULT_PROCESS_RULES, ProcessMatcher, ProcessTable } from '../dist/index.js'

const EXTRA = Number(process.argv[2] ?? 500)
const WINDOW_SECONDS = Number(process.argv[3] ?? 30)
const CLOCK_TICKS = 100 // USER_HZ
const agentBin = fileURLToPath(new URL('../dist/bin.js', import.meta.url))

const sleepers = []
const stopSleepers = () => sleepers.forEach((child) => child.kill('SIGKILL'))
process.on('exit', stopSleepers)
for (let i = 0; i < EXTRA; i++) sleepers.push(spawn('sleep', ['3600'], { stdio: 'ignore' }))
await sleep(1000)
const processCount = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).length

/** CPU ms (this process's threads, and its waited-for children) per call, wall ms, and the longest event-loop stall. */
async function measure(label, runs, fn, gapMs = 0) {
  await fn() // warm up
  const delay = monitorEventLoopDelay({ resolution: 1 })
  const children0 = childCpuMs()
  const cpu0 = process.cpuUsage()
  delay.enable()
  let wall = 0
  let extra = ''
  for (let i = 0; i < runs; i++) {
    const started = performance.now()
    extra = (await fn()) ?? ''
    wall += performance.now() - started
    if (gapMs) await sleep(gapMs)
  }
  delay.disable()
  const cpu = process.cpuUsage(cpu0)
  const selfMs = (cpu.user + cpu.system) / 1000 / runs
  const childMs = (childCpuMs() - children0) / runs
  const row = { label, cpuMs: selfMs + childMs, wallMs: wall / runs, stallMs: delay.max / 1e6, extra }
  console.log(
    `${label.padEnd(44)} cpu ${row.cpuMs.toFixed(2).padStart(6)} ms/scan (${(row.cpuMs / 10).toFixed(2)}% of a core at 1/s)` +
      `  wall ${row.wallMs.toFixed(1).padStart(5)} ms  longest stall ${row.stallMs.toFixed(1)} ms  ${extra}`,
  )
  return row
}

/** How long the event loop is held by one synchronous stretch of a scan: the time between its yields. */
async function measureBlocking() {
  const stretches = []
  let resumed = 0
  const probe = new ProcessTable(matcher, {
    yieldToLoop: async () => {
      stretches.push(performance.now() - resumed)
      await new Promise((resolve) => setImmediate(resolve))
      resumed = performance.now()
    },
  })
  for (let i = 0; i < 50; i++) {
    resumed = performance.now()
    await probe.scan() // the first reads every process, the rest are steady
    stretches.push(performance.now() - resumed)
  }
  stretches.sort((a, b) => a - b)
  const at = (q) => stretches[Math.min(stretches.length - 1, Math.floor(q * stretches.length))].toFixed(2)
  console.log(`event loop held by one stretch of a scan: median ${at(0.5)} ms, p99 ${at(0.99)} ms, max ${at(1)} ms (${stretches.length} stretches)`)
}

function childCpuMs() {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS // cutime + cstime
}

/** The full read the brief first suggested: every /proc/<pid>/stat through fs.promises, 16 at a time. */
async function promisesScan() {
  const pids = (await readdir('/proc')).filter((name) => name.charCodeAt(0) <= 57)
  let next = 0
  const buffer = () => Buffer.allocUnsafe(64)
  const worker = async () => {
    while (next < pids.length) {
      const pid = pids[next++]
      try {
        const handle = await open(`/proc/${pid}/stat`)
        try {
          await handle.read(buffer(), 0, 64, 0)
        } finally {
          await handle.close()
        }
      } catch {
        // gone
      }
    }
  }
  await Promise.all(Array.from({ length: 16 }, worker))
}

console.log(`${cpus().length} × ${cpus()[0]?.model}, Node ${process.version}, ${processCount} processes (${EXTRA} extra sleeps)\n`)
// The machine's own noise: stalls seen while the loop does nothing but wait.
await measure('nothing (a 3 ms timer: the noise floor)', 100, () => sleep(3))
const matcher = new ProcessMatcher(DEFAULT_PROCESS_RULES)
const steady = new ProcessTable(matcher)
await steady.scan()
await steady.scan()
await measure('ProcessTable.scan(), steady state', 100, async () => {
  await steady.scan()
  return `${steady.lastReads} reads`
})
await measure('ProcessTable.scan(), cold (every process read)', 50, async () => {
  const cold = new ProcessTable(matcher)
  await cold.scan()
  return `${cold.lastReads} reads`
})
await measure('full read via fs.promises (16 at a time)', 30, promisesScan)
await measureBlocking()
// systeminformation caches processes() for a while; calls spaced past that pay the full price.
await measure('systeminformation.processes() (spawns ps)', 10, async () => void (await si.processes()), 1100)

// Back to back, the code and the kernel's caches stay hot; once a second they do not, and V8 needs a while to
// compile code that runs only once a second. So: one scan a second, a window to warm up, then a window measured.
{
  const table = new ProcessTable(matcher)
  const scanEverySecond = async (seconds) => {
    const cpu0 = process.cpuUsage()
    for (let i = 0; i < seconds; i++) {
      await sleep(1000)
      await table.scan()
    }
    const cpu = process.cpuUsage(cpu0)
    return (cpu.user + cpu.system) / 1000 / seconds
  }
  const warming = await scanEverySecond(WINDOW_SECONDS)
  const warm = await scanEverySecond(WINDOW_SECONDS)
  console.log(
    `\nProcessTable.scan() once a second, this process's CPU: first ${WINDOW_SECONDS} s ${warming.toFixed(2)} ms/s, ` +
      `next ${WINDOW_SECONDS} s ${warm.toFixed(2)} ms/s (${(warm / 10).toFixed(2)}% of a core); ${table.lastReads} reads in the last scan`,
  )
}

if (WINDOW_SECONDS > 0) {
  console.log(`\nA whole agent (HEARTBEAT_INTERVAL_MS=1000), CPU from /proc/<pid>/stat over ${WINDOW_SECONDS} s after ${WINDOW_SECONDS} s of warm-up:`)
  const redis = await RedisServer.start()
  for (const watch of ['0', '1']) {
    const child = spawn(process.execPath, [agentBin], {
      env: {
        ...process.env,
        REDIS_URL: redis.url,
        AGENT_LISTEN: `127.0.0.1:${await freePort()}`,
        TORNADO_NODE_ID: 'bench-node',
        TORNADO_PREFIX: 'tornado-bench',
        TORNADO_WATCH_PROCESSES: watch,
        LOG_LEVEL: 'warn',
      },
      stdio: 'ignore',
    })
    await sleep(WINDOW_SECONDS * 1000) // start-up and V8 compiling are not the steady state
    const before = agentCpuMs(child.pid)
    await sleep(WINDOW_SECONDS * 1000)
    const used = agentCpuMs(child.pid) - before
    console.log(`  watching ${watch === '1' ? 'on ' : 'off'}: ${(used / WINDOW_SECONDS).toFixed(2)} ms CPU a second (${(used / WINDOW_SECONDS / 10).toFixed(2)}% of a core)`)
    child.kill('SIGTERM')
    await once(child, 'exit')
  }
  await redis.stop()
}
stopSleepers()
process.exit(0)

function agentCpuMs(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS // utime + stime
}
