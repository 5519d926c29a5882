#!/usr/bin/env node
// `npm run demo`: a whole local cluster on this machine. Redis (REDIS_URL, or a private redis-server on a free
// port), the API with a generated key, and three agents simulating work. Ctrl-C stops everything it started.
// `npm run demo -- --real`: the agents watch processes instead, and real FFmpeg muxing jobs run on this machine.
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import { findFfmpeg, prepareNodes, runJobs } from './demo-ffmpeg-jobs.mjs'

const root = fileURLToPath(new URL('..', import.meta.url))
const AGENT_COUNT = 3
const REAL = process.argv.includes('--real')
const children = []
/** --real: the FFmpeg job runners, one per node, and their folder. */
const jobRunners = []
let realNodes
let stopping = false

async function freePort() {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address()
  server.close()
  await once(server, 'close')
  return port
}

async function portIsFree(port) {
  const server = createServer()
  return new Promise((resolve) => {
    server.once('error', () => resolve(false))
    server.listen(port, '0.0.0.0', () => server.close(() => resolve(true)))
  })
}

function start(name, command, args, env) {
  // A process group of its own: Ctrl-C reaches only the demo, which stops agents before the API before Redis
  // (in the terminal's group, every child got SIGINT at once, Redis could go before the agents removed their nodes,
  // and the demo's own SIGTERM then hit agents already stopping).
  const child = spawn(command, args, { cwd: root, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true })
  const prefix = `[${name}] `.padEnd(10)
  for (const stream of [child.stdout, child.stderr]) {
    let partial = ''
    stream.on('data', (chunk) => {
      const lines = (partial + chunk).split('\n')
      partial = lines.pop()
      for (const line of lines) if (line.trim()) process.stdout.write(prefix + line + '\n')
    })
  }
  child.on('exit', (code, signal) => {
    if (!stopping) {
      console.error(`${prefix}exited unexpectedly (${signal ?? code}); stopping the demo`)
      void stopAll(1)
    }
  })
  children.push({ name, child })
  return child
}

async function stopAll(exitCode) {
  if (stopping) return
  stopping = true
  console.log(`\nstopping: ${REAL ? 'the FFmpeg jobs, then ' : ''}agents (they take their nodes out of the totals), then the API, then Redis`)
  await Promise.all(jobRunners.map((runner) => runner.stop()))
  const stopGroup = async (filter) => {
    const group = children.filter(({ name }) => filter(name)).map(({ child }) => child)
    await Promise.all(
      group.map(async (child) => {
        if (child.exitCode !== null || child.signalCode !== null) return
        child.kill('SIGTERM')
        const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
        await once(child, 'exit')
        clearTimeout(timer)
      }),
    )
  }
  await stopGroup((name) => name.startsWith('node-'))
  await stopGroup((name) => name === 'api')
  await stopGroup((name) => name === 'redis')
  realNodes?.remove()
  process.exit(exitCode)
}

async function waitForHealth(url) {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline && !stopping) {
    try {
      if ((await fetch(`${url}/health`)).ok) return
    } catch {
      // not listening yet
    }
    await sleep(100)
  }
  throw new Error(`the API did not answer at ${url}/health within 15 s`)
}

/** --real needs ffmpeg; without it, say what to install before starting anything. */
function checkReal() {
  if (!REAL) return undefined
  const ffmpeg = findFfmpeg()
  if (ffmpeg) return ffmpeg
  console.error(
    'npm run demo -- --real runs real FFmpeg muxing jobs on this machine, and there is no ffmpeg on PATH.\n' +
      'Install it (Debian/Ubuntu: sudo apt-get install ffmpeg; macOS: brew install ffmpeg),\n' +
      'or run the simulated cluster: npm run demo',
  )
  process.exit(1)
}

async function main() {
  const ffmpeg = checkReal()
  process.on('SIGINT', () => void stopAll(0))
  process.on('SIGTERM', () => void stopAll(0))
  // Whatever happens, no FFmpeg job outlives the demo.
  // and, since the children no longer share the terminal's process group, none outlives a demo that dies.
  process.on('exit', () => {
    jobRunners.forEach((runner) => runner.killAll())
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  })

  let redisUrl = process.env.REDIS_URL
  if (!redisUrl) {
    if (spawnSync('redis-server', ['--version']).error) {
      console.error(
        'The demo needs Redis: no REDIS_URL is set and there is no redis-server on PATH.\n' +
          'Install it (Debian/Ubuntu: sudo apt-get install redis-server; macOS: brew install redis),\n' +
          'or point the demo at a Redis you have: REDIS_URL=redis://host:6379 npm run demo',
      )
      process.exit(1)
    }
    const redisPort = await freePort()
    start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'])
    redisUrl = `redis://127.0.0.1:${redisPort}`
  }

  const apiPort = process.env.PORT ? Number(process.env.PORT) : (await portIsFree(3000)) ? 3000 : await freePort()
  const apiKey = `sk_demo_${randomBytes(16).toString('hex')}`
  // A prefix of its own, so a demo pointed at a shared Redis never mixes with real nodes.
  const common = { REDIS_URL: redisUrl, TORNADO_PREFIX: process.env.TORNADO_PREFIX ?? 'tornado-demo' }

  start('api', process.execPath, ['packages/api/dist/bin.js'], {
    ...common,
    TORNADO_API_KEYS: apiKey,
    PORT: String(apiPort),
    HOST: '127.0.0.1',
  })
  const nodeIds = Array.from({ length: AGENT_COUNT }, (_, i) => `demo-node-${i + 1}`)
  realNodes = ffmpeg ? prepareNodes(ffmpeg, nodeIds) : undefined
  for (const [i, nodeId] of nodeIds.entries()) {
    const real = realNodes?.nodes[i]
    start(`node-${i + 1}`, process.execPath, ['packages/agent/dist/bin.js', real ? '--watch-processes' : '--simulate'], {
      ...common,
      TORNADO_NODE_ID: nodeId,
      AGENT_LISTEN: `127.0.0.1:${await freePort()}`,
      ...(real ? { TORNADO_PROCESS_RULES: real.rulesFile } : {}),
    })
  }

  const apiUrl = `http://127.0.0.1:${apiPort}`
  await waitForHealth(apiUrl)
  for (const node of realNodes?.nodes ?? []) {
    jobRunners.push(runJobs(node, realNodes.dir, (line) => console.log(`[${node.nodeId}] ${line}`)))
  }
  const agents = realNodes
    ? `${AGENT_COUNT} agents watching processes, each counting its own node's real FFmpeg jobs (${realNodes.nodes.map((node) => node.name).join(', ')}: ffmpeg under a name per node, since all three share this machine; a real node counts every ffmpeg)`
    : `${AGENT_COUNT} simulating agents`
  console.log(`
Tornado demo cluster is up: Redis ${process.env.REDIS_URL ? '(from REDIS_URL)' : 'private, on a free port'}, API, ${agents}.
  API        ${apiUrl}
  API key    ${apiKey}
  Dashboard  ${apiUrl}/  (paste the API key)
  API docs   ${apiUrl}/swagger
  Totals     curl -s ${apiUrl}/dashboard/cluster -H "x-api-key: ${apiKey}"
Ctrl-C stops every process the demo started.
`)
  while (!stopping) {
    try {
      const response = await fetch(`${apiUrl}/dashboard/cluster`, { headers: { 'x-api-key': apiKey } })
      console.log(`[totals]  ${response.status} ${await response.text()}`)
    } catch (err) {
      console.log(`[totals]  unreachable: ${err.message}`)
    }
    await sleep(5000)
  }
}

main().catch((err) => {
  console.error(err.message)
  void stopAll(1)
})
