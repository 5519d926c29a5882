import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { connect } from 'node:net'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { builtBin, childEnv, freePort } from '@tornado/shared/testing'
import { heartbeatKey } from '@tornado/shared'
import { AgentEnv } from '../src/index.js'
import { inspect, layout, onEarlyExit, putCounts, startRedis, totals, waitFor, ZERO_TOTALS } from './fixtures/harness.js'

// Clients of the local interface that never finish a request must not keep the node in the cluster totals on SIGTERM,
// nor hold the process. Runs the built bin (tsc -b first) against a private redis-server.

const packageRoot = fileURLToPath(new URL('..', import.meta.url))
const agentVariables = new Set(Object.keys(AgentEnv.properties))

async function startAgent(t: Test, redisUrl: string) {
  const port = await freePort()
  const child = spawn(process.execPath, [builtBin(packageRoot)], {
    cwd: packageRoot,
    env: {
      ...childEnv(process.env, (name) => agentVariables.has(name)),
      REDIS_URL: redisUrl,
      AGENT_LISTEN: `127.0.0.1:${port}`,
      TORNADO_NODE_ID: 'stop-node',
      HEARTBEAT_INTERVAL_MS: '200',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stdout = ''
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const exited = once(child, 'exit')
  const killIfRunning = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
  }
  t.teardown(killIfRunning)
  void exited.then(onEarlyExit(killIfRunning))
  const url = `http://127.0.0.1:${port}`
  const listening = await waitFor(async () => (await fetch(`${url}/health`)).status, 200, 15_000)
  if (listening.value !== 200) throw new Error(`the agent did not listen: ${stdout} ${stderr}`)
  return { child, port, url, exited, stdout: () => stdout, stderr: () => stderr }
}

/** A raw TCP client that sends `text` and never more; `closed` resolves when the agent closes the connection. */
async function stuckClient(t: Test, port: number, text: string) {
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  socket.on('error', () => {})
  const closed = once(socket, 'close').then(() => true)
  await once(socket, 'connect')
  if (text !== '') socket.write(text)
  return { closedWithin: (ms: number) => Promise.race([closed, sleep(ms, false)]) }
}

t.test('SIGTERM with half-open local connections: the node leaves the totals at once, exit 0 promptly', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  const agent = await startAgent(t, server.url)
  t.same(await putCounts(agent.url, '{"downloading":4,"muxing":2,"uploading":1}'), { status: 204, body: undefined })
  t.same((await waitFor(check.totals, totals(4, 2, 1), 1_000)).value, totals(4, 2, 1))

  const clients = {
    silent: await stuckClient(t, agent.port, ''),
    halfHeaders: await stuckClient(t, agent.port, 'GET /health HTTP/1.1\r\nHost: x\r\n'),
    halfBody: await stuckClient(t, agent.port, 'PUT /counts HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 44\r\n\r\n{"down'),
  }
  await sleep(200) // the agent has read what they sent

  const signalledAt = Date.now()
  agent.child.kill('SIGTERM')
  // Removal must not wait on the local server: seen while the process still gives the half body its grace.
  const left = await waitFor(async () => (await check.store.readTotals()).liveNodes, 0, 3_000)
  const removedAfterMs = Date.now() - signalledAt
  const removedWhileRunning = agent.child.exitCode === null
  const [code] = (await agent.exited) as [number | null]
  const exitedAfterMs = Date.now() - signalledAt

  t.equal(left.value, 0, `node removed ${removedAfterMs} ms after SIGTERM`)
  t.ok(removedWhileRunning, 'removed before the server finished closing')
  t.equal(code, 0, 'exit code 0')
  t.ok(exitedAfterMs < 3_000, `exited ${exitedAfterMs} ms after SIGTERM`)
  const { redisTimeMs, ...snapshot } = await check.store.readTotals()
  t.same(snapshot, { totals: ZERO_TOTALS, liveNodes: 0, freshNodes: 0, pruned: 0, dropped: 0 })
  t.ok(redisTimeMs > 0)
  t.equal(await check.redis.exists(heartbeatKey(layout, 'stop-node')), 0, 'record deleted')
  for (const [name, client] of Object.entries(clients)) t.equal(await client.closedWithin(500), true, `${name}: connection closed`)
  const events = agent
    .stdout()
    .trim()
    .split('\n')
    .map((line) => (JSON.parse(line) as { event?: string }).event)
  t.same(
    events.filter((event) => ['signal', 'stopping', 'removed', 'remove_failed', 'stopped'].includes(event ?? '')),
    ['signal', 'stopping', 'removed', 'stopped'],
  )
  t.equal(agent.stderr(), '')
})

t.test('SIGTERM with only a client that sent half its headers: exit 0 without waiting out the grace', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  const agent = await startAgent(t, server.url)
  t.equal((await waitFor(async () => (await check.store.readTotals()).liveNodes, 1, 3_000)).value, 1)
  const halfHeaders = await stuckClient(t, agent.port, 'GET /health HTTP/1.1\r\nHost: x\r\n')
  await sleep(200)
  const signalledAt = Date.now()
  agent.child.kill('SIGTERM')
  const [code] = (await agent.exited) as [number | null]
  const exitedAfterMs = Date.now() - signalledAt
  t.equal(code, 0)
  // No request was received, so nothing to finish: no 1 s grace.
  t.ok(exitedAfterMs < 900, `exited ${exitedAfterMs} ms after SIGTERM`)
  t.equal((await check.store.readTotals()).liveNodes, 0)
  t.equal(await halfHeaders.closedWithin(500), true)
})
