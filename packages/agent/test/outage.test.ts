import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { INFO, WARN, events, getJson, inspect, putCounts, startTestAgent, totals, waitFor, startRedis } from './fixtures/harness.js'
import { countingStore } from './fixtures/counting-store.js'

const PASSWORD = 's3cret-pass-do-not-log'

t.test('Redis stops and comes back empty: the agent keeps running, logs once each way, re-registers', async (t) => {
  // A user with a password, so the test can check that the password never reaches a log line.
  const server = await startRedis(t, ['--user', 'tornado', 'on', `>${PASSWORD}`, '~*', '&*', '+@all'])
  const url = `redis://tornado:${PASSWORD}@127.0.0.1:${server.port}`
  const check = inspect(t, server, url)
  const counting = countingStore()
  const { agent, lines, raw } = await startTestAgent(t, url, { HEARTBEAT_INTERVAL_MS: '200' }, { wrapStore: counting.wrap })
  await putCounts(agent.url, '{"downloading":2,"muxing":1,"uploading":0}')
  t.same((await waitFor(check.totals, totals(2, 1, 0), 300)).value, totals(2, 1, 0))

  await server.stop()
  const stoppedAt = performance.now()
  await sleep(1000)
  const attempts = counting.beats.filter((beat) => beat.startedMs >= stoppedAt)
  t.ok(attempts.length >= 4 && attempts.length <= 6, `${attempts.length} beats tried in 1 s down: every tick, failing fast`)
  t.ok(attempts.every((beat) => !beat.ok && beat.settledMs - beat.startedMs < 50), 'each failed at once')
  t.equal(counting.state.maxInFlight, 1)
  t.same(await getJson(`${agent.url}/health`), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'down' } })
  t.same(await putCounts(agent.url, '{"downloading":5,"muxing":5,"uploading":5}'), { status: 204, body: undefined })
  t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 5, muxing: 5, uploading: 5 } })

  await server.restart() // empty: no scripts, no records, no totals
  const seen = await waitFor(check.totals, totals(5, 5, 5), 2000)
  t.same(seen.value, totals(5, 5, 5), `exact totals ${seen.ms} ms after Redis came back empty`)
  t.equal((await check.store.readTotals()).liveNodes, 1)
  t.equal((await check.record('node-a')).instance, agent.instanceId)
  t.same(await getJson(`${agent.url}/health`), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'up' } })

  const down = events(lines, 'redis_down')
  const recovered = events(lines, 'redis_recovered')
  t.equal(down.length, 1, 'one outage line')
  t.equal(down[0]?.level, WARN)
  t.equal(down[0]?.msg, 'cannot write heartbeat, redis unreachable; retrying every beat')
  t.match(down[0]?.err, /^not connected to redis \((connecting|reconnecting|close)\)(: .+)?$/, `says why: ${String(down[0]?.err)}`)
  t.equal(recovered.length, 1, 'one recovery line')
  t.equal(recovered[0]?.level, INFO)
  t.equal(recovered[0]?.msg, 'redis is reachable again; heartbeat written')
  t.same(events(lines, 'replaced_previous_run'), [], 'Redis came back empty: nothing to replace')
  t.equal(events(lines, 'config')[0]?.redis_url, `redis://tornado:***@127.0.0.1:${server.port}`)
  t.same(raw.filter((line) => line.includes(PASSWORD)), [], 'the password is in no log line')

  await agent.stop()
  t.same(await check.totals(), totals(0, 0, 0), 'and it still leaves the totals on stop')
})

t.test('shutdown with Redis down is bounded and still stops', async (t) => {
  const server = await startRedis(t)
  const { agent, lines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' })
  server.pause() // the worst case: a Redis that takes commands and never answers
  await sleep(300)
  const started = performance.now()
  await agent.stop()
  const took = performance.now() - started
  t.ok(took < 3300, `stop took ${Math.round(took)} ms`)
  t.equal(events(lines, 'stopped').length, 1)
  t.equal(events(lines, 'remove_failed').length, 1)
  server.resume()
})

t.test('Redis down from the start: the agent starts, serves, and registers when Redis appears', async (t) => {
  const server = await startRedis(t)
  await server.stop()
  const check = inspect(t, server)
  const { agent, lines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' })
  t.same(await getJson(`${agent.url}/health`), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'down' } })
  await putCounts(agent.url, '{"downloading":1,"muxing":0,"uploading":4}')
  await server.restart()
  t.same((await waitFor(check.totals, totals(1, 0, 4), 2000)).value, totals(1, 0, 4))
  const down = events(lines, 'redis_down')
  t.equal(down.length, 1)
  t.match(down[0]?.err, /^not connected to redis \((connecting|reconnecting)\): connect ECONNREFUSED 127\.0\.0\.1:\d+$/, `says why: ${String(down[0]?.err)}`)
  t.equal(events(lines, 'redis_recovered').length, 1)
})
