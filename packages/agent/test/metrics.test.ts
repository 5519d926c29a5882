import { setImmediate as turn, setTimeout as sleep } from 'node:timers/promises'
import type { BeatResult, NodeHeartbeat } from '@tornado/shared'
import t from 'tap'
import { AgentMetrics, BEAT_BUCKETS_SECONDS, HeartbeatLoop } from '../src/index.js'
import { captureLogger, putCounts, startRedis, startTestAgent, waitFor } from './fixtures/harness.js'
import { countingStore } from './fixtures/counting-store.js'

/** The samples of a Prometheus text page, keyed by `name{labels}` exactly as printed. */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>()
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue
    const cut = line.lastIndexOf(' ')
    samples.set(line.slice(0, cut), Number(line.slice(cut + 1)))
  }
  return samples
}

async function scrape(url: string) {
  const response = await fetch(`${url}/metrics`)
  const text = await response.text()
  return { status: response.status, contentType: response.headers.get('content-type'), text, samples: parse(text) }
}

const ok: BeatResult = { previousInstanceId: '', previousAgeMs: 0, dropped: 0, redisTimeMs: 1_700_000_000_000 }

t.test('the loop times each write on the monotonic clock and tells its observer; the metrics add up exactly', async (t) => {
  let nowMs = 1000
  // What each write does: how long it takes on the clock, and what it returns or throws.
  const script: { takesMs: number; result?: BeatResult; error?: Error }[] = [
    { takesMs: 0.5, result: { ...ok, previousInstanceId: 'a-previous-run' } }, // the first beat: this node's previous run, not a duplicate
    { takesMs: 7, result: { ...ok, previousInstanceId: 'other' } },
    { takesMs: 7, result: { ...ok, previousInstanceId: 'other' } },
    { takesMs: 2, error: new Error('Connection is closed.') },
    { takesMs: 600, result: ok },
    { takesMs: 1500, result: ok },
  ]
  const store = {
    async writeHeartbeat(_beat: NodeHeartbeat): Promise<BeatResult> {
      const step = script.shift()!
      nowMs += step.takesMs
      if (step.error) throw step.error
      return step.result!
    },
  }
  let jobs = { downloading: 4, muxing: 0, uploading: 9 }
  let loop!: HeartbeatLoop
  const metrics = new AgentMetrics({ counts: () => jobs, redisUp: () => loop.redisUp === true, processMetrics: false })
  const heard: string[] = []
  loop = new HeartbeatLoop({
    store,
    intervalMs: 60_000,
    logger: captureLogger().logger,
    monotonicNow: () => nowMs,
    nextBeat: () => ({ nodeId: 'n', instanceId: 'me', hostname: 'h', ip: '10.0.0.1', counts: jobs, agentTimeMs: 0 }),
    observer: {
      written: (ms) => (heard.push(`written ${ms.toFixed(1)}`), metrics.written(ms)),
      failed: () => (heard.push('failed'), metrics.failed()),
      duplicate: () => (heard.push('duplicate'), metrics.duplicate()),
    },
  })
  await loop.start()
  for (let beat = 1; beat < 6; beat++) {
    loop.beatNow()
    await turn()
  }
  await loop.stop()
  t.same(heard, ['written 0.5', 'written 7.0', 'duplicate', 'written 7.0', 'duplicate', 'failed', 'written 600.0', 'written 1500.0'])
  t.equal(loop.beats, 5)
  t.equal(loop.failures, 1)

  const samples = parse(await metrics.render())
  const expected: Record<string, number> = {
    tornado_agent_beats_total: 5,
    tornado_agent_beat_failures_total: 1,
    tornado_agent_duplicate_overwrites_total: 2,
    tornado_agent_last_beat_duration_seconds: 1.5,
    tornado_agent_beat_duration_seconds_count: 5,
    'tornado_agent_jobs{stage="downloading"}': 4,
    'tornado_agent_jobs{stage="muxing"}': 0,
    'tornado_agent_jobs{stage="uploading"}': 9,
    tornado_agent_redis_up: 1,
  }
  for (const [name, value] of Object.entries(expected)) t.equal(samples.get(name), value, name)
  t.ok(Math.abs(samples.get('tornado_agent_beat_duration_seconds_sum')! - 2.1145) < 1e-9, 'the sum: 0.5 + 7 + 7 + 600 + 1500 ms')
  const buckets = BEAT_BUCKETS_SECONDS.map((le) => samples.get(`tornado_agent_beat_duration_seconds_bucket{le="${le}"}`))
  // 0.5 ms; 7 ms twice; 600 ms; 1500 ms beyond the last bucket.
  t.same(buckets, [1, 1, 1, 3, 3, 3, 3, 3, 3, 4], `le ${BEAT_BUCKETS_SECONDS.join(', ')}`)
  t.equal(samples.get('tornado_agent_beat_duration_seconds_bucket{le="+Inf"}'), 5)
  t.equal([...samples.keys()].filter((name) => !name.startsWith('tornado_agent_')).length, 0, 'no process metrics when turned off')

  jobs = { downloading: 0, muxing: 1, uploading: 0 }
  const again = parse(await metrics.render())
  t.same(
    ['downloading', 'muxing', 'uploading'].map((stage) => again.get(`tornado_agent_jobs{stage="${stage}"}`)),
    [0, 1, 0],
    'the counts are read at scrape time',
  )
})

t.test('a real agent: the counters equal what the loop counted, Redis down shows, the jobs gauges follow PUT /counts', async (t) => {
  const server = await startRedis(t)
  const counting = countingStore()
  const { agent } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '100' }, { wrapStore: counting.wrap })

  await t.test('beats and latency', async (t) => {
    await sleep(600)
    await agent.loop.stop() // freezes the counts so the page and the loop can be compared exactly
    const page = await scrape(agent.url)
    t.equal(page.status, 200)
    t.equal(page.contentType, 'text/plain; version=0.0.4; charset=utf-8')
    const written = counting.beats.filter((beat) => beat.ok).length
    t.ok(written >= 5, `${written} beats written`)
    t.equal(agent.loop.beats, written)
    t.equal(page.samples.get('tornado_agent_beats_total'), written, 'the counter equals the beats written')
    t.equal(page.samples.get('tornado_agent_beat_duration_seconds_count'), written)
    t.equal(page.samples.get('tornado_agent_beat_duration_seconds_bucket{le="+Inf"}'), written)
    t.equal(page.samples.get('tornado_agent_beat_failures_total'), 0)
    t.equal(page.samples.get('tornado_agent_duplicate_overwrites_total'), 0)
    t.equal(page.samples.get('tornado_agent_redis_up'), 1)
    // The loop's timing wraps the counting store's, so it is at least that store's own round trip.
    const last = counting.beats.filter((beat) => beat.ok).at(-1)!
    const lastSeconds = page.samples.get('tornado_agent_last_beat_duration_seconds')!
    t.ok(lastSeconds >= (last.settledMs - last.startedMs) / 1000 && lastSeconds < 0.05, `last beat ${(lastSeconds * 1000).toFixed(2)} ms`)
    t.ok(page.samples.get('process_resident_memory_bytes')! > 10e6, 'prom-client\'s process metrics, unprefixed')
    t.ok(page.samples.has('nodejs_eventloop_lag_seconds'))
    t.same([...new Set(page.text.match(/^# TYPE tornado_agent_\w+ \w+$/gm))].sort(), [
      '# TYPE tornado_agent_beat_duration_seconds histogram',
      '# TYPE tornado_agent_beat_failures_total counter',
      '# TYPE tornado_agent_beats_total counter',
      '# TYPE tornado_agent_duplicate_overwrites_total counter',
      '# TYPE tornado_agent_jobs gauge',
      '# TYPE tornado_agent_last_beat_duration_seconds gauge',
      '# TYPE tornado_agent_redis_up gauge',
    ])
    await agent.loop.start()
  })

  await t.test('the jobs gauges are the node\'s counts', async (t) => {
    t.same(await putCounts(agent.url, '{"downloading":3,"muxing":1,"uploading":0}'), { status: 204, body: undefined })
    const worker = await fetch(`${agent.url}/workers/w1/counts`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: '{"downloading":0,"muxing":2,"uploading":5}',
    })
    t.equal(worker.status, 204)
    const jobs = (await scrape(agent.url)).samples
    t.same(
      ['downloading', 'muxing', 'uploading'].map((stage) => jobs.get(`tornado_agent_jobs{stage="${stage}"}`)),
      [3, 3, 5],
    )
    t.same(agent.counts(), { downloading: 3, muxing: 3, uploading: 5 })
  })

  await t.test('Redis stops: failures rise and redis_up is 0; it comes back: 1 again', async (t) => {
    await server.stop()
    const writtenBefore = agent.loop.beats
    await sleep(500)
    const down = (await scrape(agent.url)).samples
    t.equal(down.get('tornado_agent_redis_up'), 0)
    const failures = down.get('tornado_agent_beat_failures_total')!
    t.ok(failures >= 3 && failures <= agent.loop.failures, `${failures} failures in 500 ms down`)
    t.equal(down.get('tornado_agent_beats_total'), writtenBefore, 'nothing written meanwhile')

    await server.restart()
    const up = await waitFor(async () => (await scrape(agent.url)).samples.get('tornado_agent_redis_up'), 1, 3000)
    t.equal(up.value, 1, `redis_up 1 again ${up.ms} ms after the restart`)
    await agent.loop.stop()
    const after = (await scrape(agent.url)).samples
    t.equal(after.get('tornado_agent_beats_total'), agent.loop.beats)
    t.equal(after.get('tornado_agent_beats_total'), counting.beats.filter((beat) => beat.ok).length)
    t.equal(after.get('tornado_agent_beat_failures_total'), agent.loop.failures)
    t.equal(after.get('tornado_agent_beat_failures_total'), counting.beats.filter((beat) => !beat.ok).length)
    t.equal(after.get('tornado_agent_beat_duration_seconds_count'), agent.loop.beats, 'failures are not in the histogram')
  })
})
