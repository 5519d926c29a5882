import { connect } from 'node:net'
import t from 'tap'
import type { BeatResult, NodeHeartbeat } from '@tornado/shared'
import { HOST_INFO, getJson, inspect, putCounts, startTestAgent, totals, waitFor, ZERO_TOTALS, startRedis } from './fixtures/harness.js'

const AGENT_TIME_MS = 1_767_225_600_000

t.test('PUT /counts, GET /counts and /health against a real redis-server', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  // A long interval: anything that shows up in Redis quickly came from the immediate beat, not the timer.
  const { agent } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '60000' }, { clock: () => AGENT_TIME_MS })
  t.same(await check.totals(), ZERO_TOTALS)
  t.equal(agent.loop.beats, 1, 'the first beat is written at start')

  await t.test('a valid report reaches Redis at once, well before the next tick', async (t) => {
    const response = await putCounts(agent.url, '{"downloading":3,"muxing":1,"uploading":0}')
    t.same(response, { status: 204, body: undefined })
    const seen = await waitFor(check.totals, totals(3, 1, 0), 300)
    t.same(seen.value, totals(3, 1, 0))
    t.ok(seen.ms < 300, `visible after ${seen.ms} ms`)
    const record = await check.record('node-a')
    const [redisSeconds] = await check.redis.time()
    t.ok(Math.abs(Number(record.seen_ms) - Number(redisSeconds) * 1000) < 2000, 'seen_ms is on the Redis clock')
    t.same(record, {
      hostname: HOST_INFO.hostname,
      ip: HOST_INFO.ip,
      downloading: '3',
      muxing: '1',
      uploading: '0',
      instance: agent.instanceId,
      agent_time_ms: String(AGENT_TIME_MS),
      seen_ms: record.seen_ms!,
    })
    t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 3, muxing: 1, uploading: 0 } })
    t.equal(agent.loop.beats, 2, 'exactly one extra beat')
  })

  await t.test('a charset parameter on the content type is fine', async (t) => {
    t.same(await putCounts(agent.url, '{"downloading":4,"muxing":2,"uploading":1}', 'application/json; charset=utf-8'), {
      status: 204,
      body: undefined,
    })
    t.same((await waitFor(check.totals, totals(4, 2, 1), 300)).value, totals(4, 2, 1))
  })

  await t.test('every bad report is a 400 naming what is wrong, and changes nothing', async (t) => {
    const big = JSON.stringify({ downloading: 1, muxing: 1, uploading: 1, padding: 'x'.repeat(1100) })
    const cases: [string, string, string | undefined, string][] = [
      ['missing field', '{"downloading":1,"muxing":1}', undefined, 'uploading is required'],
      ['negative', '{"downloading":-1,"muxing":1,"uploading":0}', undefined, 'downloading must be an integer from 0 to 1000000'],
      ['float', '{"downloading":1,"muxing":1.5,"uploading":0}', undefined, 'muxing must be an integer from 0 to 1000000'],
      ['string number', '{"downloading":1,"muxing":1,"uploading":"3"}', undefined, 'uploading must be an integer from 0 to 1000000'],
      ['too large', '{"downloading":1000001,"muxing":1,"uploading":0}', undefined, 'downloading must be an integer from 0 to 1000000'],
      ['boolean', '{"downloading":true,"muxing":1,"uploading":0}', undefined, 'downloading must be an integer from 0 to 1000000'],
      ['null field', '{"downloading":null,"muxing":1,"uploading":0}', undefined, 'downloading must be an integer from 0 to 1000000'],
      ['extra field', '{"downloading":1,"muxing":1,"uploading":0,"queued":2}', undefined, 'queued is not a known field; expected downloading, muxing and uploading'],
      ['not JSON', '{"downloading":1,', undefined, 'body is not valid JSON'],
      ['null', 'null', undefined, 'body must be a JSON object like {"downloading":0,"muxing":0,"uploading":0}'],
      ['array', '[1,2,3]', undefined, 'body must be a JSON object like {"downloading":0,"muxing":0,"uploading":0}'],
      ['number', '3', undefined, 'body must be a JSON object like {"downloading":0,"muxing":0,"uploading":0}'],
      ['empty', '', undefined, 'body is empty; expected a JSON object like {"downloading":0,"muxing":0,"uploading":0}'],
      ['text/plain', '{"downloading":1,"muxing":1,"uploading":0}', 'text/plain', 'content-type must be application/json'],
      ['form', 'downloading=1', 'application/x-www-form-urlencoded', 'content-type must be application/json'],
      ['over 1 KiB', big, undefined, 'body is larger than 1024 bytes; expected a JSON object like {"downloading":0,"muxing":0,"uploading":0}'],
      ['prototype poisoning', '{"__proto__":{"x":1},"downloading":1,"muxing":1,"uploading":0}', undefined, 'body is not valid JSON'],
    ]
    const beatsBefore = agent.loop.beats
    for (const [name, body, contentType, error] of cases) {
      t.same(await putCounts(agent.url, body, contentType), { status: 400, body: { error } }, name)
      t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 4, muxing: 2, uploading: 1 } }, `${name}: counts unchanged`)
    }
    const noBody = await fetch(`${agent.url}/counts`, { method: 'PUT' })
    t.same({ status: noBody.status, body: await noBody.json() }, {
      status: 400,
      body: { error: 'body must be a JSON object like {"downloading":0,"muxing":0,"uploading":0}' },
    })
    t.equal(agent.loop.beats, beatsBefore, 'no beat for a refused report')
    t.same(await check.totals(), totals(4, 2, 1), 'Redis unchanged')
    t.same((await check.record('node-a')).downloading, '4')
  })

  await t.test('GET /health and unknown routes', async (t) => {
    t.same(await getJson(`${agent.url}/health`), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'up' } })
    t.same(await getJson(`${agent.url}/nope?x=1`), { status: 404, body: { error: 'no route GET /nope' } })
    t.same(await getJson(`${agent.url}/%E0%A4%A`), { status: 400, body: { error: 'the URL is malformed' } })
    const del = await fetch(`${agent.url}/counts`, { method: 'DELETE' })
    t.same({ status: del.status, body: await del.json() }, { status: 404, body: { error: 'no route DELETE /counts' } })
  })

  await t.test('requests Node cannot parse get the same {"error"} shape', async (t) => {
    const huge = await fetch(`${agent.url}/counts`, { headers: { 'x-filler': 'x'.repeat(20_000) } })
    t.same({ status: huge.status, body: await huge.json() }, { status: 431, body: { error: 'Request Header Fields Too Large' } })
    // A garbled request line, as a raw socket sends it.
    const { port } = new URL(agent.url)
    const answer = await new Promise<string>((resolve, reject) => {
      let text = ''
      const socket = connect(Number(port), '127.0.0.1', () => socket.write('NOT HTTP AT ALL\r\n\r\n'))
      socket.setEncoding('utf8').on('data', (chunk: string) => (text += chunk))
      socket.on('close', () => resolve(text)).on('error', reject)
    })
    t.match(answer, /^HTTP\/1\.1 400 Bad Request\r\n/)
    t.equal(answer.split('\r\n\r\n')[1], '{"error":"Bad Request"}')
  })
})

t.test('reports while a beat is in flight coalesce into exactly one more beat', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  let gate: Promise<void> = Promise.resolve()
  const written: NodeHeartbeat[] = []
  let inFlight = 0
  let maxInFlight = 0
  const { agent } = await startTestAgent(t, server.url, { HEARTBEAT_INTERVAL_MS: '5000' }, {
    wrapStore: (store) => ({
      async writeHeartbeat(beat): Promise<BeatResult> {
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        try {
          await gate
          written.push(beat)
          return await store.writeHeartbeat(beat)
        } finally {
          inFlight--
        }
      },
    }),
  })
  t.equal(written.length, 1)
  let open: () => void = () => {}
  gate = new Promise((resolve) => (open = resolve))
  t.equal((await putCounts(agent.url, '{"downloading":1,"muxing":0,"uploading":0}')).status, 204)
  t.equal((await putCounts(agent.url, '{"downloading":2,"muxing":0,"uploading":0}')).status, 204)
  t.equal((await putCounts(agent.url, '{"downloading":3,"muxing":0,"uploading":0}')).status, 204)
  t.equal(inFlight, 1, 'one beat in flight, held')
  open()
  const seen = await waitFor(check.totals, totals(3, 0, 0), 500)
  t.same(seen.value, totals(3, 0, 0))
  await new Promise((resolve) => setTimeout(resolve, 100))
  t.same(
    written.map((beat) => beat.counts.downloading),
    [0, 1, 3],
    'start, the beat in flight, then exactly one more with the latest counts',
  )
  t.equal(maxInFlight, 1)
})

t.test('simulate mode refuses PUT /counts with 409', async (t) => {
  const server = await startRedis(t)
  const { agent } = await startTestAgent(t, server.url, { TORNADO_SIMULATE: '1' }, { random: () => 0.5 })
  t.same(await putCounts(agent.url, '{"downloading":3,"muxing":1,"uploading":0}'), {
    status: 409,
    body: { error: 'this agent is simulating its workload (--simulate or TORNADO_SIMULATE=1), so it does not take PUT /counts' },
  })
  t.same(await getJson(`${agent.url}/counts`), { status: 200, body: { downloading: 0, muxing: 0, uploading: 0 } })
  t.same(await getJson(`${agent.url}/health`), { status: 200, body: { status: 'ok', node_id: 'node-a', redis: 'up' } })
})
