import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { connect, type Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { builtBin, childEnv, RedisServer } from '@tornado/shared/testing'
import { openEventStream } from './sse-client.js'

// A stop must not wait on clients that never finish their request: requests already received get a short grace,
// then every connection left is closed. These run the built bin (tsc -b first) against a private redis-server.

const API_KEY = 'sk_stop_connections_test_4b1d'
const OUR_VARIABLES = /^(REDIS_URL|TORNADO_.*|STALE_AFTER_MS|PORT|HOST|LOG_LEVEL|METRICS_ENABLED)$/
const packageRoot = fileURLToPath(new URL('..', import.meta.url))
/** Exit well within this after SIGTERM: the 1.5 s grace plus room for a loaded 2-core machine (was 5 s and exit 1). */
const STOP_BOUND_MS = 3_000

interface Exit {
  code: number | null
  elapsedMs: number
}

async function startApi(t: Test) {
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  const child: ChildProcess = spawn(process.execPath, [builtBin(packageRoot)], {
    env: {
      ...childEnv(process.env, (name) => OUR_VARIABLES.test(name)),
      REDIS_URL: redisServer.url,
      TORNADO_API_KEYS: API_KEY,
      PORT: '0',
      HOST: '127.0.0.1',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const exited = once(child, 'exit')
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL')
      await exited
    }
  })
  const port = await listeningPort(child, () => output)
  const stop = async (): Promise<Exit> => {
    const signalledAt = Date.now()
    child.kill('SIGTERM')
    const [code] = (await exited) as [number | null]
    return { code, elapsedMs: Date.now() - signalledAt }
  }
  return { port, url: `http://127.0.0.1:${port}`, stop, output: () => output }
}

async function listeningPort(child: ChildProcess, output: () => string): Promise<number> {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    const match = /"msg":"Server listening at http:\/\/127\.0\.0\.1:(\d+)"/.exec(output())
    if (match?.[1]) return Number(match[1])
    if (child.exitCode !== null) throw new Error(`tornado-api exited early:\n${output()}`)
    await sleep(25)
  }
  throw new Error(`tornado-api did not listen:\n${output()}`)
}

/** A raw TCP client: sends what a test says, keeps what comes back, and notes when the server closes it. */
async function rawClient(t: Test, port: number, send = '') {
  const socket: Socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  let received = ''
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()))
  socket.on('error', () => {}) // a reset is one way of being closed
  const closed = once(socket, 'close').then(() => true)
  await once(socket, 'connect')
  if (send !== '') socket.write(send)
  return {
    socket,
    received: () => received,
    /** true once the server has closed the connection, false if it still holds it after withinMs. */
    closedWithin: (withinMs: number) => Promise.race([closed, sleep(withinMs, false)]),
  }
}

const HALF_HEADERS = 'GET /health HTTP/1.1\r\nHost: x\r\n' // no blank line: the request never ends
const SESSION_HEAD = `POST /dashboard/session HTTP/1.1\r\nHost: x\r\nx-api-key: ${API_KEY}\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n`

t.test('SIGTERM with clients that never finish their request: exit 0 within the bound, every connection closed', async (t) => {
  const api = await startApi(t)
  const silent = await rawClient(t, api.port)
  const halfHeaders = await rawClient(t, api.port, HALF_HEADERS)
  const halfBody = await rawClient(t, api.port, `${SESSION_HEAD}{"a"`)
  // The well-behaved kinds stop at once already; they must keep doing so next to the others.
  const idleKeepAlive = await rawClient(t, api.port, 'GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
  const stream = await openEventStream(`${api.url}/dashboard/cluster/stream`, { 'x-api-key': API_KEY })
  t.teardown(stream.close)
  t.equal(stream.status, 200)
  t.equal((await stream.next()).event, 'cluster')
  while (!idleKeepAlive.received().includes('{"status":"ok"}')) await sleep(10)
  await sleep(200) // the server has read what the half requests sent

  const exit = await api.stop()
  t.equal(exit.code, 0, 'exit code 0')
  t.ok(exit.elapsedMs < STOP_BOUND_MS, `stopped ${exit.elapsedMs} ms after SIGTERM`)
  for (const [name, client] of Object.entries({ silent, halfHeaders, halfBody, idleKeepAlive })) {
    t.equal(await client.closedWithin(500), true, `${name}: connection closed`)
  }
  await stream.ended
  t.notMatch(api.output(), 'graceful stop took too long')
  t.match(api.output(), '"msg":"stopped"')
})

t.test('nothing but a client that sent nothing: stops without waiting out the grace', async (t) => {
  const api = await startApi(t)
  const silent = await rawClient(t, api.port)
  const halfHeaders = await rawClient(t, api.port, HALF_HEADERS)
  await sleep(200)
  const exit = await api.stop()
  t.equal(exit.code, 0)
  // No request was received, so there is nothing to finish: no 1.5 s grace.
  t.ok(exit.elapsedMs < 1_200, `stopped ${exit.elapsedMs} ms after SIGTERM`)
  t.equal(await silent.closedWithin(500), true)
  t.equal(await halfHeaders.closedWithin(500), true)
})

t.test('a request in flight at SIGTERM is finished within the grace', async (t) => {
  const api = await startApi(t)
  const client = await rawClient(t, api.port, `${SESSION_HEAD}{"a"`)
  await sleep(200)
  const stopped = api.stop()
  await sleep(300)
  client.socket.write(': 1}') // the rest of the 8-byte body
  const exit = await stopped
  t.equal(exit.code, 0)
  t.ok(exit.elapsedMs < STOP_BOUND_MS, `stopped ${exit.elapsedMs} ms after SIGTERM`)
  t.equal(await client.closedWithin(500), true)
  t.match(client.received(), /^HTTP\/1\.1 200 OK\r\n/)
  t.match(client.received(), /\r\n\r\n\{"expires_in_ms":\d+\}$/)
})
