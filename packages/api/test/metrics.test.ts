import t from 'tap'
import { heartbeatKey, shardKeys } from '@tornado/shared'
import { get, heartbeat, KEY_A, setHeartbeatAge, startTestApi } from './helper.js'

const auth = { 'x-api-key': KEY_A }

/** The value of one sample line of Prometheus text, e.g. sample(text, 'x_total{a="b"}'); undefined when absent. */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${series} `))
  return line === undefined ? undefined : Number(line.slice(series.length + 1))
}

async function scrape(url: string): Promise<{ status: number; text: string; contentType: string | null }> {
  const response = await fetch(`${url}/metrics`)
  return { status: response.status, text: await response.text(), contentType: response.headers.get('content-type') }
}

const requests = (method: string, route: string, status: number) =>
  `tornado_api_http_requests_total{method="${method}",route="${route}",status_code="${status}"}`
const durationCount = (method: string, route: string, status: number) =>
  `tornado_api_http_request_duration_seconds_count{method="${method}",route="${route}",status_code="${status}"}`

t.test('GET /metrics counts requests by route pattern and status, without an API key', async (t) => {
  const api = await startTestApi(t)
  for (let i = 0; i < 3; i++) t.equal((await get(`${api.url}/health`)).status, 200)
  t.equal((await get(`${api.url}/dashboard/cluster`, auth)).status, 200)
  t.equal((await get(`${api.url}/dashboard/cluster?cache=bust`, auth)).status, 200) // same route, other URL
  t.equal((await get(`${api.url}/dashboard/cluster`)).status, 401)
  t.equal((await get(`${api.url}/no/such/page-1`)).status, 404)
  t.equal((await get(`${api.url}/no/such/page-2`)).status, 404)

  const first = await scrape(api.url)
  t.equal(first.status, 200)
  t.equal(first.contentType, 'text/plain; version=0.0.4; charset=utf-8')
  t.equal(sample(first.text, requests('GET', '/health', 200)), 3)
  t.equal(sample(first.text, durationCount('GET', '/health', 200)), 3)
  t.equal(sample(first.text, requests('GET', '/dashboard/cluster', 200)), 2)
  t.equal(sample(first.text, requests('GET', '/dashboard/cluster', 401)), 1)
  t.equal(sample(first.text, requests('GET', '(unmatched)', 404)), 2, 'unknown URLs share one series')
  t.notOk(first.text.includes('cache=bust') || first.text.includes('/no/such'), 'raw URLs never become labels')
  t.equal(sample(first.text, requests('GET', '/metrics', 200)), undefined, 'a scrape is counted once it is answered')
  t.match(first.text, /\nprocess_cpu_user_seconds_total \d/, 'process metrics too')

  const second = await scrape(api.url)
  t.equal(sample(second.text, requests('GET', '/metrics', 200)), 1)
  t.equal(sample(second.text, requests('GET', '/health', 200)), 3)
})

t.test('aggregation reads, live, fresh and stale nodes, pruned nodes', async (t) => {
  const api = await startTestApi(t)
  const counts = { downloading: 1, muxing: 2, uploading: 3 }
  for (const id of ['node-1', 'node-2', 'node-3', 'node-4']) await api.agentStore.writeHeartbeat(heartbeat(id, counts))
  await setHeartbeatAge(api, 'node-4', 31_000)
  // Older than ONLINE_WITHIN_MS (5 s): still counted, but stale, as the node table shows it.
  await setHeartbeatAge(api, 'node-2', 6_000)

  // TOTALS_CACHE_MS=0 in tests: each of these is one Redis read, and the scrape itself makes one more.
  t.equal((await get(`${api.url}/dashboard/cluster`, auth)).status, 200)
  t.equal((await get(`${api.url}/dashboard/nodes`, auth)).status, 200)
  const { text } = await scrape(api.url)
  t.equal(sample(text, 'tornado_api_live_nodes'), 3)
  t.equal(sample(text, 'tornado_api_fresh_nodes'), 2)
  t.equal(sample(text, 'tornado_api_stale_nodes'), 1)
  t.equal(sample(text, 'tornado_api_pruned_nodes_total'), 1)
  t.equal(sample(text, 'tornado_api_store_read_duration_seconds_count{read="totals",outcome="ok"}'), 2)
  t.equal(sample(text, 'tornado_api_store_read_duration_seconds_count{read="nodes",outcome="ok"}'), 1)
  t.equal(sample(text, 'tornado_api_redis_up'), 1)
  t.equal(sample(text, 'tornado_api_redis_errors_total{source="totals"}'), 0)
  t.equal(sample(text, 'tornado_api_redis_errors_total{source="ping"}'), 0)

  // A node that stops beating: the next scrape sees it leave.
  await setHeartbeatAge(api, 'node-3', 31_000)
  const later = (await scrape(api.url)).text
  t.equal(sample(later, 'tornado_api_live_nodes'), 2)
  t.same([sample(later, 'tornado_api_fresh_nodes'), sample(later, 'tornado_api_stale_nodes')], [1, 1])
  t.equal(sample(later, 'tornado_api_pruned_nodes_total'), 2)
  t.equal(sample(later, 'tornado_api_dropped_records_total'), 0)

  // Garbage where node-1's record belongs: dropped by the next read, counted once however many requests share it.
  await api.raw.set(heartbeatKey(api.config.layout, 'node-1'), 'not a record')
  await api.raw.hset(shardKeys(api.config.layout, 0).totals, 'muxing', 'garbage')
  const after = (await scrape(api.url)).text
  t.equal(sample(after, 'tornado_api_dropped_records_total'), 2, 'the record and the totals key')
  t.equal(sample(after, 'tornado_api_live_nodes'), 1)
})

t.test('GET /ready is 200 only while Redis answers; errors are counted', async (t) => {
  const api = await startTestApi(t)
  const ready = await get(`${api.url}/ready`)
  t.equal(ready.status, 200)
  t.equal(ready.text, '{"status":"ready"}')

  await api.redisServer.stop()
  const down = await get(`${api.url}/ready`)
  t.equal(down.status, 503)
  t.equal(down.text, '{"error":"Redis unavailable"}')
  t.ok(down.elapsedMs < 1_500, `503 within ${Math.round(down.elapsedMs)} ms`)
  t.equal((await get(`${api.url}/ready`)).status, 503)
  t.equal((await get(`${api.url}/dashboard/cluster`, auth)).status, 503)

  const during = await scrape(api.url)
  t.equal(during.status, 200, 'metrics are served while Redis is away')
  t.equal(sample(during.text, 'tornado_api_redis_up'), 0)
  t.equal(sample(during.text, 'tornado_api_redis_errors_total{source="ping"}'), 2)
  t.equal(sample(during.text, 'tornado_api_redis_errors_total{source="totals"}'), 2, 'the dashboard read and the scrape read')
  t.equal(sample(during.text, 'tornado_api_store_read_duration_seconds_count{read="totals",outcome="error"}'), 2)
  t.equal(sample(during.text, requests('GET', '/ready', 503)), 2)
  // Each failed reconnect attempt is one connection error; the first comes after the client's first backoff.
  const connectionErrors = async () => sample((await scrape(api.url)).text, 'tornado_api_redis_errors_total{source="connection"}') ?? 0
  const errorsDeadline = Date.now() + 3_000
  while ((await connectionErrors()) === 0 && Date.now() < errorsDeadline) await new Promise((resolve) => setTimeout(resolve, 50))
  t.ok((await connectionErrors()) >= 1, 'failed reconnects are counted')

  await api.redisServer.restart()
  const deadline = Date.now() + 5_000
  let back = await get(`${api.url}/ready`)
  while (back.status !== 200 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 50))
    back = await get(`${api.url}/ready`)
  }
  t.equal(back.status, 200, 'ready again without a restart')
  t.equal(back.text, '{"status":"ready"}')
  t.equal(sample((await scrape(api.url)).text, 'tornado_api_redis_up'), 1)
})

t.test('METRICS_ENABLED=0: no /metrics route', async (t) => {
  const api = await startTestApi(t, { METRICS_ENABLED: '0' })
  const res = await get(`${api.url}/metrics`)
  t.equal(res.status, 404)
  t.equal(res.text, '{"error":"Route GET /metrics not found"}')
  t.equal((await get(`${api.url}/ready`)).status, 200, '/ready stays')
})
