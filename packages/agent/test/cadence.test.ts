import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { INFO, WARN, events, inspect, putCounts, startTestAgent, totals, waitFor, startRedis } from './fixtures/harness.js'
import { countingStore } from './fixtures/counting-store.js'

t.test('beats keep a fixed cadence without drift and never overlap', async (t) => {
  const server = await startRedis(t)
  const counting = countingStore()
  await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' }, { wrapStore: counting.wrap })
  await sleep(2100)
  const first = counting.beats[0]!.startedMs
  const inWindow = counting.beats.filter((beat) => beat.startedMs - first <= 2050)
  t.equal(inWindow.length, 11, 'a beat at 0, 200, ..., 2000 ms')
  const lateness = inWindow.map((beat, k) => Math.round(beat.startedMs - (first + 200 * k)))
  t.ok(
    lateness.every((ms) => ms >= -5 && ms < 60),
    `each beat on its target (target = first + 200 k), no drift: lateness ${lateness.join(', ')} ms`,
  )
  t.ok(lateness.at(-1)! < 60, 'the tenth beat is as punctual as the first')
  for (let i = 1; i < counting.beats.length; i++) {
    if (counting.beats[i]!.startedMs < counting.beats[i - 1]!.settledMs) t.fail(`beat ${i} started before beat ${i - 1} settled`)
  }
  t.equal(counting.state.maxInFlight, 1)
  t.ok(counting.beats.every((beat) => beat.ok))
})

t.test('a paused Redis: one beat waits out its timeout, then beats fail at once; none stack, none are replayed', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  const counting = countingStore()
  const { agent, lines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' }, { wrapStore: counting.wrap })
  await sleep(400)
  server.pause()
  const pausedAt = performance.now()
  t.same(await putCounts(agent.url, '{"downloading":7,"muxing":0,"uploading":0}'), { status: 204, body: undefined }, 'reports are taken while Redis hangs')
  await sleep(1500)
  const duringPause = counting.beats.filter((beat) => beat.startedMs >= pausedAt)
  const waited = duringPause.filter((beat) => beat.settledMs - beat.startedMs >= 900)
  const failedAtOnce = duringPause.filter((beat) => beat.settledMs - beat.startedMs < 50)
  // The timed-out beat drops the connection (redis-client.ts): nothing more is written to the stopped Redis.
  t.equal(waited.length, 1, 'one beat waited out the 1 s command timeout')
  t.ok(failedAtOnce.length >= 1 && failedAtOnce.length <= 4, `then ${failedAtOnce.length} beats, every tick, failed at once`)
  t.equal(waited.length + failedAtOnce.length + counting.state.inFlight, duringPause.length, 'no other kind of beat')
  t.ok(counting.state.inFlight <= 1, 'never a pile')
  server.resume()
  const resumedAt = performance.now()
  const seen = await waitFor(check.totals, totals(7, 0, 0), 2000)
  t.same(seen.value, totals(7, 0, 0), `the report reached Redis ${seen.ms} ms after resume`)
  await sleep(600)
  const afterResume = counting.beats.filter((beat) => beat.startedMs >= resumedAt && beat.startedMs < resumedAt + 1000)
  t.ok(afterResume.length <= 6, `${afterResume.length} beats in the second after resume: the cadence, no catch-up burst`)
  t.equal(counting.state.maxInFlight, 1, 'never two beats at once')
  for (let i = 1; i < counting.beats.length; i++) {
    if (counting.beats[i]!.startedMs < counting.beats[i - 1]!.settledMs) t.fail(`beat ${i} overlapped beat ${i - 1}`)
  }
  const down = events(lines, 'redis_down')
  const recovered = events(lines, 'redis_recovered')
  t.equal(down.length, 1)
  t.equal(down[0]?.level, WARN)
  t.equal(down[0]?.err, 'Command timed out')
  t.equal(recovered.length, 1)
  t.equal(recovered[0]?.level, INFO)
})
