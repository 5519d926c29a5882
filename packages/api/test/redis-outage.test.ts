import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitForReady } from '@tornado/shared'
import { get, heartbeat, KEY_A, startTestApi, totals, type JsonResponse, type TestApi } from './helper.js'

const auth = { 'x-api-key': KEY_A }
const UNAVAILABLE = '{"error":"Redis unavailable"}'
const OUTAGE_WARNING = 'Redis unavailable: answering 503 until it returns'
const RECOVERED = 'Redis available again'

/** Polls until the API answers 200 (the client reconnects with backoff), or gives up after timeoutMs. */
async function firstSuccess(api: TestApi, timeoutMs: number): Promise<JsonResponse> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const res = await get(`${api.url}/dashboard/cluster`, auth)
    if (res.status === 200 || Date.now() > deadline) return res
    await sleep(50)
  }
}

t.test('Redis stopped: 503 within about a second; back to exact totals after a restart, same app', async (t) => {
  const api = await startTestApi(t)
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 3, muxing: 2, uploading: 1 }))
  t.same((await get(`${api.url}/dashboard/cluster`, auth)).body, totals(3, 2, 1))

  await api.redisServer.stop()
  for (let i = 0; i < 3; i++) {
    const res = await get(`${api.url}/dashboard/cluster`, auth)
    t.equal(res.status, 503)
    t.equal(res.text, UNAVAILABLE)
    t.ok(res.elapsedMs < 1_500, `answered in ${Math.round(res.elapsedMs)} ms`)
  }
  const health = await get(`${api.url}/health`)
  t.equal(health.status, 200, '/health still answers')
  t.equal(health.text, '{"status":"ok"}')

  await api.redisServer.restart() // comes back empty
  t.equal(await waitForReady(api.agentRedis, 5_000), true, 'the agent client reconnected')
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 4, muxing: 0, uploading: 2 }))
  await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 1, muxing: 1, uploading: 1 }))
  const back = await firstSuccess(api, 5_000)
  t.equal(back.status, 200)
  t.same(back.body, totals(5, 1, 3))

  const warnings = api.logs.withMessage(OUTAGE_WARNING)
  t.equal(warnings.length, 1, 'one warning for the outage, not one per request')
  t.equal(warnings[0]?.level, 40)
  const recoveries = api.logs.withMessage(RECOVERED)
  t.equal(recoveries.length, 1, 'one info line for the recovery')
  t.equal(recoveries[0]?.level, 30)
  t.notOk(api.logs.text.join('\n').includes(KEY_A), 'no key in the log')
})

t.test('Redis paused (SIGSTOP): 503 within about a second, 200 again after it resumes', async (t) => {
  const api = await startTestApi(t)
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 8, muxing: 1, uploading: 0 }))
  api.redisServer.pause()
  t.teardown(() => api.redisServer.resume())
  for (let i = 0; i < 2; i++) {
    const res = await get(`${api.url}/dashboard/cluster`, auth)
    t.equal(res.status, 503)
    t.equal(res.text, UNAVAILABLE)
    t.ok(res.elapsedMs < 1_500, `answered in ${Math.round(res.elapsedMs)} ms`)
  }
  t.equal((await get(`${api.url}/health`)).status, 200, '/health does not touch Redis')

  api.redisServer.resume()
  const back = await firstSuccess(api, 5_000)
  t.equal(back.status, 200)
  t.same(back.body, totals(8, 1, 0))
  t.equal(api.logs.withMessage(OUTAGE_WARNING).length, 1, 'one warning for the outage')
  t.equal(api.logs.withMessage(RECOVERED).length, 1, 'one info line for the recovery')
})

t.test('the API starts while Redis is down and serves once it comes', async (t) => {
  const api = await startTestApi(t, {}, { redisStopped: true })
  const res = await get(`${api.url}/dashboard/cluster`, auth)
  t.equal(res.status, 503)
  t.equal(res.text, UNAVAILABLE)
  await api.redisServer.restart()
  t.equal(await waitForReady(api.agentRedis, 5_000), true)
  await api.agentStore.writeHeartbeat(heartbeat('late', { downloading: 2, muxing: 2, uploading: 2 }))
  const back = await firstSuccess(api, 5_000)
  t.equal(back.status, 200)
  t.same(back.body, totals(2, 2, 2))
  t.equal(api.logs.withMessage(OUTAGE_WARNING).length, 1, 'the outage at start is logged once')
  t.equal(api.logs.withMessage(RECOVERED).length, 1)
})

t.test('closing the app with Redis paused still finishes quickly', async (t) => {
  const api = await startTestApi(t)
  api.redisServer.pause()
  t.teardown(() => api.redisServer.resume())
  const started = Date.now()
  await api.app.close()
  t.ok(Date.now() - started < 2_500, `closed in ${Date.now() - started} ms`)
  t.equal(api.logs.withMessage(OUTAGE_WARNING).length, 0, 'a deliberate close is not an outage')
})
