import t from 'tap'
import { REQUEST_TIMEOUT_REPLY, sendAndWait } from '@tornado/shared/testing'
import { CLIENT_REQUEST_TIMEOUT_MS } from '../src/local-server.js'
import { startRedis, startTestAgent } from './fixtures/harness.js'

// A client of the local interface that never finishes its request is answered 408 and cut off after 10 s (Node
// checks each second), instead of holding its connection for ever (mid-body) or a minute and a half (mid-headers).



t.test('unfinished requests get 408 and are closed after 10 s', async (t) => {
  t.equal(CLIENT_REQUEST_TIMEOUT_MS, 10_000)
  const server = await startRedis(t)
  const { agent } = await startTestAgent(t, server.url)
  const port = Number(new URL(agent.url).port)
  const limitMs = CLIENT_REQUEST_TIMEOUT_MS + 5_000
  const outcomes = await Promise.all([
    sendAndWait(port, '', limitMs),
    sendAndWait(port, 'GET /health HTTP/1.1\r\nHost: x\r\n', limitMs),
    sendAndWait(port, 'PUT /counts HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 44\r\n\r\n{"down', limitMs),
  ])
  for (const [name, outcome] of Object.entries({ silent: outcomes[0], halfHeaders: outcomes[1], halfBody: outcomes[2] })) {
    t.equal(outcome.closed, true, `${name}: closed`)
    t.ok(outcome.afterMs >= CLIENT_REQUEST_TIMEOUT_MS - 50 && outcome.afterMs < CLIENT_REQUEST_TIMEOUT_MS + 3_000, `${name}: closed after ${outcome.afterMs} ms`)
    t.equal(outcome.received, REQUEST_TIMEOUT_REPLY, `${name}: answered 408`)
  }
})
