import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import t, { type Test } from 'tap'
import { MAX_WORKERS } from '../src/index.js'
import { WARN, events, getJson, inspect, putCounts, startRedis, startTestAgent, totals, waitFor, ZERO_TOTALS } from './fixtures/harness.js'

/** PUT /workers/:id/counts with a raw body; status and parsed body. */
async function putWorker(url: string, id: string, body: string) {
  const response = await fetch(`${url}/workers/${id}/counts`, { method: 'PUT', body, headers: { 'content-type': 'application/json' } })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) }
}

async function deleteWorker(url: string, id: string) {
  const response = await fetch(`${url}/workers/${id}`, { method: 'DELETE' })
  const text = await response.text()
  return { status: response.status, body: text === '' ? undefined : (JSON.parse(text) as unknown) }
}

interface ListedWorker {
  id: string
  age_ms: number
  [field: string]: unknown
}

/** GET /workers with each age checked against `maxAgeMs` and then left out, so the rest compares exactly. */
async function listWorkers(t: Test, url: string, maxAgeMs = 1000) {
  const { status, body } = await getJson(`${url}/workers`)
  const workers = (body as { workers: ListedWorker[] }).workers
  for (const worker of workers) t.ok(worker.age_ms >= 0 && worker.age_ms <= maxAgeMs, `${worker.id} age ${worker.age_ms} ms`)
  return { status, workers: workers.map(({ age_ms: _, ...rest }) => rest) }
}

const ACCEPTED = { status: 204, body: undefined }

t.test('per-worker reports on one agent', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  // A long interval: whatever reaches Redis quickly came from the immediate beat of a change.
  const { agent, lines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '5000' })

  await t.test('two workers sum, with PUT /counts as the worker default', async (t) => {
    t.same(await putWorker(agent.url, 'w1', '{"downloading":1,"muxing":2,"uploading":0}'), ACCEPTED)
    t.same(await putWorker(agent.url, 'ffmpeg-pool:2', '{"downloading":3,"muxing":0,"uploading":1,"ttl_ms":60000}'), ACCEPTED)
    t.same((await waitFor(check.totals, totals(4, 2, 1), 300)).value, totals(4, 2, 1))
    t.same(await putCounts(agent.url, '{"downloading":0,"muxing":0,"uploading":5}'), ACCEPTED)
    t.same((await waitFor(check.totals, totals(4, 2, 6), 300)).value, totals(4, 2, 6))
    t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 4, muxing: 2, uploading: 6 } }, 'GET /counts is the node total')
    t.same(await listWorkers(t, agent.url), {
      status: 200,
      workers: [
        { id: 'default', downloading: 0, muxing: 0, uploading: 5, ttl_ms: null },
        { id: 'ffmpeg-pool:2', downloading: 3, muxing: 0, uploading: 1, ttl_ms: 60000 },
        { id: 'w1', downloading: 1, muxing: 2, uploading: 0, ttl_ms: 10000 },
      ],
    })
  })

  await t.test('only a change of the sum beats at once: a renewal with the same counts writes nothing', async (t) => {
    const beats = agent.loop.beats
    t.same(await putWorker(agent.url, 'w1', '{"downloading":1,"muxing":2,"uploading":0}'), ACCEPTED)
    await sleep(100)
    t.equal(agent.loop.beats, beats, 'no beat for a renewal')
    t.same(await putWorker(agent.url, 'w1', '{"downloading":2,"muxing":2,"uploading":0}'), ACCEPTED)
    t.same((await waitFor(check.totals, totals(5, 2, 6), 300)).value, totals(5, 2, 6))
    // Redis may answer the check before the agent has taken its beat's reply: wait for the count, then for no more.
    await waitFor(async () => agent.loop.beats, beats + 1, 300)
    await sleep(100)
    t.equal(agent.loop.beats, beats + 1, 'one beat for a change')
  })

  await t.test('DELETE removes a worker at once; an unknown one is a 404', async (t) => {
    t.same(await deleteWorker(agent.url, 'w1'), { status: 204, body: undefined })
    t.same((await waitFor(check.totals, totals(3, 0, 6), 300)).value, totals(3, 0, 6), 'left the totals at once')
    t.same(await deleteWorker(agent.url, 'w1'), { status: 404, body: { error: 'no worker w1 on this node' } })
    t.same(await deleteWorker(agent.url, 'default'), { status: 204, body: undefined })
    t.same(await deleteWorker(agent.url, 'ffmpeg-pool:2'), { status: 204, body: undefined })
    t.same((await waitFor(check.totals, ZERO_TOTALS, 300)).value, ZERO_TOTALS)
    t.same(await listWorkers(t, agent.url), { status: 200, workers: [] })
    t.same(events(lines, 'worker_expired'), [], 'removed, not expired')
  })

  await t.test('bad worker ids are a 400 and change nothing', async (t) => {
    const error = { error: 'the worker id must be 1 to 64 letters, digits, or . _ : -' }
    const body = '{"downloading":1,"muxing":0,"uploading":0}'
    for (const id of ['a%20b', 'x'.repeat(65), 'y'.repeat(3000), '%C3%A9t%C3%A9', 'a%2Fb', '%00', 'w%0A1']) {
      t.same(await putWorker(agent.url, id, body), { status: 400, body: error }, `PUT ${id.slice(0, 20)}`)
      t.same(await deleteWorker(agent.url, id), { status: 400, body: error }, `DELETE ${id.slice(0, 20)}`)
    }
    t.same(await putWorker(agent.url, 'x'.repeat(64), body), ACCEPTED, '64 characters are fine')
    t.same(await deleteWorker(agent.url, 'x'.repeat(64)), { status: 204, body: undefined })
    t.same(await putWorker(agent.url, '', body), { status: 400, body: error }, 'an empty id')
    t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 0, muxing: 0, uploading: 0 } })
  })

  await t.test('bad reports are a 400 naming what is wrong, and change nothing', async (t) => {
    const ttl = 'ttl_ms must be an integer from 1000 to 300000 (milliseconds)'
    const cases: [string, string][] = [
      ['{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":999}', ttl],
      ['{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":300001}', ttl],
      ['{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":"5000"}', ttl],
      ['{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":1500.5}', ttl],
      ['{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":null}', ttl],
      ['{"downloading":1,"muxing":0,"uploading":0,"ttl":5000}', 'ttl is not a known field; expected downloading, muxing and uploading, and optionally ttl_ms'],
      ['{"downloading":1,"muxing":0,"ttl_ms":5000}', 'uploading is required'],
      ['{"downloading":-1,"muxing":0,"uploading":0}', 'downloading must be an integer from 0 to 1000000'],
      ['[]', 'body must be a JSON object like {"downloading":0,"muxing":0,"uploading":0}'],
      ['{"downloading":1,', 'body is not valid JSON'],
    ]
    for (const [body, error] of cases) t.same(await putWorker(agent.url, 'w2', body), { status: 400, body: { error } }, body)
    t.same(await putCounts(agent.url, '{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":5000}'), {
      status: 400,
      body: { error: 'ttl_ms is not a known field; expected downloading, muxing and uploading' },
    }, 'PUT /counts takes no lease')
    t.same(await listWorkers(t, agent.url), { status: 200, workers: [] })
  })

  await t.test('the sum over workers may not pass the per-node limit', async (t) => {
    t.same(await putWorker(agent.url, 'big', '{"downloading":1000000,"muxing":0,"uploading":0}'), ACCEPTED)
    t.same(await putWorker(agent.url, 'one-more', '{"downloading":1,"muxing":0,"uploading":0}'), {
      status: 400,
      body: { error: "downloading would be 1000001 summed over this node's workers, over the limit of 1000000" },
    })
    t.same(await putWorker(agent.url, 'big', '{"downloading":999999,"muxing":0,"uploading":0}'), ACCEPTED, 'lowering is fine')
    t.same(await putWorker(agent.url, 'one-more', '{"downloading":1,"muxing":0,"uploading":0}'), ACCEPTED)
    t.same((await waitFor(check.totals, totals(1_000_000, 0, 0), 300)).value, totals(1_000_000, 0, 0))
    await deleteWorker(agent.url, 'big')
    await deleteWorker(agent.url, 'one-more')
  })

  await t.test('GET /processes says when the agent does not watch processes', async (t) => {
    t.same(await getJson(`${agent.url}/processes`), {
      status: 404,
      body: { error: 'this agent does not watch processes; start it with --watch-processes or TORNADO_WATCH_PROCESSES=1' },
    })
  })
})

t.test('a lease runs out: the worker leaves the totals within a tick, logged once', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  let clockOffsetMs = 0 // real time first; at the end the test moves the agent's lease clock forward
  const { agent, lines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' }, {
    monotonicNow: () => performance.now() + clockOffsetMs,
  })
  t.same(await putWorker(agent.url, 'crashy', '{"downloading":0,"muxing":2,"uploading":0,"ttl_ms":1000}'), ACCEPTED)
  t.same(await putWorker(agent.url, 'steady', '{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":1000}'), ACCEPTED)
  const reportedAt = performance.now()
  t.same((await waitFor(check.totals, totals(1, 2, 0), 300)).value, totals(1, 2, 0))
  // steady renews its lease (as the client does, every ttl/3); crashy has stopped.
  const renewals = setInterval(() => void putWorker(agent.url, 'steady', '{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":1000}'), 330)
  t.teardown(() => clearInterval(renewals))
  const gone = await waitFor(check.totals, totals(1, 0, 0), 2000)
  const afterMs = performance.now() - reportedAt
  t.same(gone.value, totals(1, 0, 0))
  t.ok(afterMs >= 1000 && afterMs < 1000 + 200 + 300, `crashy left ${Math.round(afterMs)} ms after its last report (ttl 1000 + a 200 ms tick)`)
  await sleep(400)
  clearInterval(renewals)
  t.same(await check.totals(), totals(1, 0, 0), 'a renewed lease lasts')
  const expired = events(lines, 'worker_expired')
  t.equal(expired.length, 1, 'logged once')
  t.same(
    { level: expired[0]?.level, worker_id: expired[0]?.worker_id, ttl_ms: expired[0]?.ttl_ms, counts: expired[0]?.counts, msg: expired[0]?.msg },
    {
      level: WARN,
      worker_id: 'crashy',
      ttl_ms: 1000,
      counts: { downloading: 0, muxing: 2, uploading: 0 },
      msg: "worker crashy sent no report for over 1000 ms; its counts left this node's totals",
    },
  )
  t.same(await listWorkers(t, agent.url), { status: 200, workers: [{ id: 'steady', downloading: 1, muxing: 0, uploading: 0, ttl_ms: 1000 }] })
  t.same(await putCounts(agent.url, '{"downloading":0,"muxing":0,"uploading":3}'), ACCEPTED)
  clockOffsetMs = 3_600_000 // an hour without reports
  const left = await waitFor(check.totals, totals(0, 0, 3), 500)
  t.same(left.value, totals(0, 0, 3), 'default (PUT /counts) has no lease; steady, no longer renewed, expired at the next tick')
  t.same(events(lines, 'worker_expired').map((line) => line.worker_id), ['crashy', 'steady'])
})

t.test(`at most ${MAX_WORKERS} workers: then 429, until one leaves or its lease runs out`, async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  let clockOffsetMs = 0 // leases are judged on the agent's monotonic clock, which the test moves forward
  const { agent, lines } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '200' }, {
    monotonicNow: () => performance.now() + clockOffsetMs,
  })
  const one = '{"downloading":1,"muxing":0,"uploading":0,"ttl_ms":10000}'
  for (let start = 0; start < MAX_WORKERS; start += 64) {
    const batch = Array.from({ length: 64 }, (_, i) => putWorker(agent.url, `worker-${start + i}`, one))
    for (const response of await Promise.all(batch)) if (response.status !== 204) t.fail(`${JSON.stringify(response)}`)
  }
  t.same((await waitFor(check.totals, totals(MAX_WORKERS, 0, 0), 500)).value, totals(MAX_WORKERS, 0, 0))
  const full = {
    status: 429,
    body: { error: 'this node already has 1024 workers, the most an agent keeps; DELETE /workers/<id> the ones that stopped, or let their leases expire' },
  }
  t.same(await putWorker(agent.url, 'one-too-many', one), full)
  t.same(await putWorker(agent.url, 'worker-7', '{"downloading":2,"muxing":0,"uploading":0}'), ACCEPTED, 'a known worker still reports')
  t.same(await putCounts(agent.url, '{"downloading":0,"muxing":5,"uploading":0}'), ACCEPTED, 'default is not one of the 1024')
  t.same((await waitFor(check.totals, totals(MAX_WORKERS + 1, 5, 0), 500)).value, totals(MAX_WORKERS + 1, 5, 0))
  t.equal(((await getJson(`${agent.url}/workers`)).body as { workers: unknown[] }).workers.length, MAX_WORKERS + 1)

  t.same(await deleteWorker(agent.url, 'worker-0'), { status: 204, body: undefined })
  t.same(await putWorker(agent.url, 'one-too-many', one), ACCEPTED, 'a slot freed by DELETE')
  t.same(await putWorker(agent.url, 'another', one), full)

  clockOffsetMs = 10_001 // every lease but default's has run out; no tick has swept them yet
  t.same(await putWorker(agent.url, 'another', one), ACCEPTED, 'expired workers make room at once')
  t.same((await waitFor(check.totals, totals(1, 5, 0), 500)).value, totals(1, 5, 0))
  t.equal(events(lines, 'worker_expired').length, MAX_WORKERS, 'each expired worker logged once')
  t.same(await listWorkers(t, agent.url, clockOffsetMs + 1000), {
    status: 200,
    workers: [
      { id: 'another', downloading: 1, muxing: 0, uploading: 0, ttl_ms: 10000 },
      { id: 'default', downloading: 0, muxing: 5, uploading: 0, ttl_ms: null },
    ],
  }, 'nothing else is kept')
})

t.test('simulate mode refuses worker reports with 409', async (t) => {
  const server = await startRedis(t)
  const { agent } = await startTestAgent(t, server.url, { TORNADO_SIMULATE: '1' }, { random: () => 0.5 })
  t.same(await putWorker(agent.url, 'w1', '{"downloading":1,"muxing":0,"uploading":0}'), {
    status: 409,
    body: { error: 'this agent is simulating its workload (--simulate or TORNADO_SIMULATE=1), so it does not take worker reports' },
  })
  t.same(await getJson(`${agent.url}/workers`), { status: 200, body: { workers: [] } })
})
