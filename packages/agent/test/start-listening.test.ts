import t from 'tap'
import { pino } from 'pino'
import { freePort } from '@tornado/shared/testing'
import { loadConfig, startAgent } from '../src/index.js'
import { HOST_INFO } from './fixtures/harness.js'

// Workers report from the moment the agent starts: the local interface must not wait for Redis (it waited up to 2 s).
t.test('with Redis away, the local interface takes reports before the agent has waited for Redis', async (t) => {
  const port = await freePort()
  const nobody = await freePort() // nothing listens there: every connection is refused
  const config = loadConfig(
    { REDIS_URL: `redis://127.0.0.1:${nobody}`, AGENT_LISTEN: `127.0.0.1:${port}`, TORNADO_NODE_ID: 'early-node' },
    { hostname: 'test-host' },
  )
  const startedAt = Date.now()
  const starting = startAgent(config, { logger: pino({ level: 'silent' }), readHostInfo: async () => HOST_INFO })
  t.teardown(async () => (await starting).stop())

  let put: Response | undefined
  while (!put && Date.now() - startedAt < 5_000) {
    put = await fetch(`http://127.0.0.1:${port}/counts`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ downloading: 2, muxing: 1, uploading: 0 }),
    }).catch(() => undefined)
    if (!put) await new Promise((resolve) => setTimeout(resolve, 20))
  }
  const answeredAfterMs = Date.now() - startedAt
  t.equal(put?.status, 204, 'the report is taken')
  t.ok(answeredAfterMs < 1_500, `answered ${answeredAfterMs} ms after start (Redis is waited for up to 2000 ms)`)
  const agent = await starting
  t.ok(Date.now() - startedAt >= 1_900, 'start-up still waited for Redis before the first beat')
  t.same(await (await fetch(`http://127.0.0.1:${port}/counts`)).json(), { downloading: 2, muxing: 1, uploading: 0 })
  t.same(await (await fetch(`http://127.0.0.1:${port}/health`)).json(), { status: 'ok', node_id: 'early-node', redis: 'down' })
  t.equal(agent.nodeId, 'early-node')
})
