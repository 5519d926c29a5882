import t from 'tap'
import { get, KEY_A, startTestApi } from './helper.js'

// One line per request, its level by outcome: polling must not flood the log, refusals must show.
t.test('at info: refused and failed requests are logged once each, successful polls are not', async (t) => {
  const api = await startTestApi(t)
  for (let i = 0; i < 3; i++) t.equal((await get(`${api.url}/dashboard/cluster?x=1`, { 'x-api-key': KEY_A })).status, 200)
  t.equal((await get(`${api.url}/dashboard/cluster?token=sk_in_query`, { 'x-api-key': 'sk_wrong_key' })).status, 401)
  await api.redisServer.stop()
  t.equal((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': KEY_A })).status, 503)

  const lines = api.logs.withMessage('request')
  t.same(
    lines.map(({ level, method, path, status }) => ({ level, method, path, status })),
    [
      { level: 30, method: 'GET', path: '/dashboard/cluster', status: 401 },
      { level: 40, method: 'GET', path: '/dashboard/cluster', status: 503 },
    ],
  )
  t.match(lines[0], { ms: Number, remote: '127.0.0.1' })
  t.same(api.logs.withMessage('incoming request'), [], "Fastify's own request lines are off")
  t.same(api.logs.withMessage('request completed'), [])
  const text = api.logs.text.join('\n')
  t.notOk(text.includes('sk_wrong_key') || text.includes('sk_in_query') || text.includes(KEY_A), 'no key, no query string')
  t.match(String(api.logs.entries[0]!.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'ISO time, as the agent logs it')
})

t.test('at debug: every request is one line', async (t) => {
  const api = await startTestApi(t, { LOG_LEVEL: 'debug' })
  t.equal((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': KEY_A })).status, 200)
  t.equal((await get(`${api.url}/health`)).status, 200)
  t.same(
    api.logs.withMessage('request').map(({ level, path, status }) => ({ level, path, status })),
    [
      { level: 20, path: '/dashboard/cluster', status: 200 },
      { level: 20, path: '/health', status: 200 },
    ],
  )
})

t.test('a URL that does not decode is logged too, without its query string', async (t) => {
  const api = await startTestApi(t, { LOG_LEVEL: 'debug' })
  const res = await get(`${api.url}/dashboard/%E0%A4%A?token=sk_in_query`, { 'x-api-key': KEY_A })
  t.equal(res.status, 400)
  t.same(
    api.logs.withMessage('request').map(({ level, method, path, status }) => ({ level, method, path, status })),
    [{ level: 20, method: 'GET', path: '/dashboard/%E0%A4%A', status: 400 }],
  )
  const text = api.logs.text.join('\n')
  t.notOk(text.includes('sk_in_query') || text.includes(KEY_A), 'no key, no query string')
})

t.test('a locked-out client retrying does not flood the log: its 429s are debug, the lockout one warning', async (t) => {
  const api = await startTestApi(t, { AUTH_FAILURE_LIMIT: '2' })
  const statuses = []
  for (let i = 0; i < 6; i++) statuses.push((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': `sk_guess_${i}` })).status)
  t.same(statuses, [401, 401, 429, 429, 429, 429])
  t.same(
    api.logs.withMessage('request').map(({ level, status }) => ({ level, status })),
    [
      { level: 30, status: 401 },
      { level: 30, status: 401 },
    ],
  )
  t.equal(api.logs.withMessage('too many failed authentications: address locked out').length, 1)
})
