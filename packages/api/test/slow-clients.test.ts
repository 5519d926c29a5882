import { once } from 'node:events'
import { connect } from 'node:net'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { RedisServer, REQUEST_TIMEOUT_REPLY, sendAndWait } from '@tornado/shared/testing'
import { buildApp, loadApiConfig } from '../src/index.js'
import { CLIENT_REQUEST_TIMEOUT_MS } from '../src/app.js'
import { KEY_A, LogCapture } from './helper.js'
import { openEventStream } from './sse-client.js'

// A client that sends its request slowly, or never finishes it, is answered 408 and cut off; a long response (the
// event stream) is not. The timeout is shortened to 500 ms here; Node checks for it once a second.

const TIMEOUT_MS = 500

async function startApp(t: Test, requestTimeoutMs?: number) {
  const redisServer = await RedisServer.start()
  const config = loadApiConfig({ REDIS_URL: redisServer.url, TORNADO_API_KEYS: KEY_A })
  const app = await buildApp({ config, logger: { stream: new LogCapture().stream }, streamIntervalMs: 100, ...(requestTimeoutMs ? { requestTimeoutMs } : {}) })
  t.teardown(async () => {
    await app.close()
    await redisServer.stop()
  })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return { app, port }
}


t.test('unfinished requests get 408 and are closed within the timeout plus one check', async (t) => {
  const { port } = await startApp(t, TIMEOUT_MS)
  const [silent, halfHeaders, halfBody] = await Promise.all([
    sendAndWait(port, '', 4_000),
    sendAndWait(port, 'GET /health HTTP/1.1\r\nHost: x\r\n', 4_000),
    sendAndWait(port, `POST /dashboard/session HTTP/1.1\r\nHost: x\r\nx-api-key: ${KEY_A}\r\ncontent-type: application/json\r\ncontent-length: 8\r\n\r\n{"a"`, 4_000),
  ])
  for (const [name, outcome] of Object.entries({ silent, halfHeaders, halfBody })) {
    t.equal(outcome.closed, true, `${name}: closed`)
    t.ok(outcome.afterMs >= TIMEOUT_MS - 50 && outcome.afterMs < TIMEOUT_MS + 2_000, `${name}: closed after ${outcome.afterMs} ms`)
    t.equal(outcome.received, REQUEST_TIMEOUT_REPLY, `${name}: answered 408`)
  }
})

t.test('an event stream outlives the request timeout: it keeps getting events', async (t) => {
  const { port } = await startApp(t, TIMEOUT_MS)
  const stream = await openEventStream(`http://127.0.0.1:${port}/dashboard/cluster/stream`, { 'x-api-key': KEY_A })
  t.teardown(stream.close)
  t.equal(stream.status, 200)
  await sleep(TIMEOUT_MS + 2_000) // past the timeout and at least one check
  const event = await stream.next(1_000)
  t.equal(event.event, 'cluster')
  // Drain what queued up while sleeping, then one more proves it is still live.
  while (await stream.next(50).then(() => true, () => false));
  t.equal((await stream.next(1_000)).event, 'cluster')
})

t.test('an idle keep-alive connection is not a slow client: its next request, past the timeout, is answered', async (t) => {
  const { port } = await startApp(t, TIMEOUT_MS)
  const socket = connect(port, '127.0.0.1')
  t.teardown(() => socket.destroy())
  let received = ''
  socket.on('data', (chunk: Buffer) => (received += chunk.toString()))
  await once(socket, 'connect')
  const answers = async (count: number) => {
    while (received.split('{"status":"ok"}').length - 1 < count) await sleep(10)
  }
  socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
  await answers(1)
  await sleep(TIMEOUT_MS + 2_000)
  t.equal(socket.destroyed, false, 'still open')
  socket.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n')
  await answers(2)
  t.notMatch(received, '408')
})

t.test('by default a client has 10 s for its headers and its whole request', async (t) => {
  const { app } = await startApp(t)
  t.equal(CLIENT_REQUEST_TIMEOUT_MS, 10_000)
  t.equal(app.server.headersTimeout, 10_000)
  t.equal(app.server.requestTimeout, 10_000)
})
