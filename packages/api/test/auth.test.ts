import { request } from 'node:http'
import t from 'tap'
import { sha256 } from '../src/config.js'
import { isAcceptedKey } from '../src/plugins/auth.js'
import { get, heartbeat, KEY_A, KEY_B, startTestApi, totals } from './helper.js'

const MISSING = { error: 'Missing x-api-key header' }
const INVALID = { error: 'Invalid API Key' }

/** GET with raw header lines, so one header can really be sent twice. */
function getWithRawHeaders(url: string, rawHeaders: string[]): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers: ['host', new URL(url).host, ...rawHeaders] }, (res) => {
      let text = ''
      res.on('data', (chunk: Buffer) => (text += chunk.toString()))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }))
    })
    req.on('error', reject)
    req.end()
  })
}

t.test('x-api-key on /dashboard/*', async (t) => {
  const api = await startTestApi(t)
  const cluster = `${api.url}/dashboard/cluster`
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 7, muxing: 2, uploading: 1 }))

  t.test('missing header: 401 Missing', async (t) => {
    const res = await get(cluster)
    t.equal(res.status, 401)
    t.equal(res.text, '{"error":"Missing x-api-key header"}')
  })

  t.test('empty header: 401 Missing', async (t) => {
    const res = await get(cluster, { 'x-api-key': '' })
    t.equal(res.status, 401)
    t.same(res.body, MISSING)
  })

  t.test('whitespace-only header: 401 Missing', async (t) => {
    const res = await get(cluster, { 'x-api-key': ' \t ' })
    t.equal(res.status, 401)
    t.same(res.body, MISSING)
  })

  t.test('unknown key: 401 Invalid API Key', async (t) => {
    for (const key of ['sk_wrong', KEY_A.toUpperCase(), `${KEY_A}x`, KEY_A.slice(0, -1), `${KEY_A},${KEY_B}`]) {
      const res = await get(cluster, { 'x-api-key': key })
      t.equal(res.status, 401, key)
      t.equal(res.text, '{"error":"Invalid API Key"}', key)
    }
  })

  t.test('either configured key: 200 with the totals', async (t) => {
    for (const key of [KEY_A, KEY_B]) {
      const res = await get(cluster, { 'x-api-key': key })
      t.equal(res.status, 200)
      t.same(res.body, totals(7, 2, 1))
    }
  })

  t.test('the header sent twice: 401 Invalid API Key, even when both copies are valid', async (t) => {
    const twice = await getWithRawHeaders(cluster, ['x-api-key', KEY_A, 'x-api-key', KEY_A])
    t.equal(twice.status, 401)
    t.same(twice.body, INVALID)
    const mixed = await getWithRawHeaders(cluster, ['x-api-key', KEY_A, 'x-api-key', KEY_B])
    t.equal(mixed.status, 401)
    t.same(mixed.body, INVALID)
  })

  t.test('an array header value (as inject or another adapter may deliver it): 401 Invalid API Key', async (t) => {
    const res = await api.app.inject({ method: 'GET', url: '/dashboard/cluster', headers: { 'x-api-key': [KEY_A, KEY_A] } })
    t.equal(res.statusCode, 401)
    t.same(res.json(), INVALID)
  })

  t.test('/health needs no key', async (t) => {
    const res = await get(`${api.url}/health`)
    t.equal(res.status, 200)
    t.equal(res.text, '{"status":"ok"}')
  })

  t.test('no key ever appears in the log', async (t) => {
    const text = api.logs.text.join('\n')
    t.ok(api.logs.text.length > 10, 'requests were logged')
    t.notOk(text.includes(KEY_A), 'first key absent')
    t.notOk(text.includes(KEY_B), 'second key absent')
    t.notOk(text.includes('sk_wrong'), 'a rejected key absent')
  })
})

t.test('keys are trimmed and empty entries ignored', async (t) => {
  const api = await startTestApi(t, { TORNADO_API_KEYS: ` ${KEY_A} ,, ,${KEY_B}, ` })
  for (const key of [KEY_A, KEY_B]) {
    t.equal((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': key })).status, 200, 'accepted')
  }
  t.equal((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': ' ' })).status, 401)
  t.equal(api.config.apiKeyDigests.length, 2)
})

t.test('isAcceptedKey compares digests against every key', async (t) => {
  const digests = [sha256('one'), sha256('two'), sha256('three')]
  t.equal(isAcceptedKey('one', digests), true)
  t.equal(isAcceptedKey('three', digests), true, 'a match at the end')
  t.equal(isAcceptedKey('four', digests), false)
  t.equal(isAcceptedKey('', digests), false)
  t.equal(isAcceptedKey('x'.repeat(10_000), digests), false, 'any length is fine: digests are compared')
  t.equal(isAcceptedKey('one', []), false)
})
