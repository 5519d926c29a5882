import t from 'tap'
import { sha256 } from '../src/config.js'
import { createSessionToken, SESSION_TTL_MS, verifySessionToken } from '../src/session.js'
import { buildApp, loadApiConfig } from '../src/index.js'
import { get, heartbeat, KEY_A, KEY_B, LogCapture, startTestApi, totals } from './helper.js'

const COOKIE_LINE = /^tornado_session=(\d{13}\.[A-Za-z0-9_-]{43}); Max-Age=900; Path=\/dashboard; HttpOnly; SameSite=Strict$/
const CLEARED = 'tornado_session=; Max-Age=0; Path=/dashboard; Expires=Thu, 01 Jan 1970 00:00:00 GMT; HttpOnly; SameSite=Strict'

async function post(url: string, headers: Record<string, string> = {}) {
  const res = await fetch(url, { method: 'POST', headers })
  return { status: res.status, text: await res.text(), setCookie: res.headers.get('set-cookie') }
}

const withCookie = (token: string) => ({ cookie: `tornado_session=${token}` })

t.test('dashboard sessions over real HTTP', async (t) => {
  const api = await startTestApi(t)
  const sessionUrl = `${api.url}/dashboard/session`
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 7, muxing: 2, uploading: 1 }))

  const startSession = async (key: string) => {
    const res = await post(sessionUrl, { 'x-api-key': key })
    t.equal(res.status, 200)
    const token = COOKIE_LINE.exec(res.setCookie ?? '')?.[1]
    if (!token) throw new Error(`unexpected set-cookie ${res.setCookie}`)
    return { res, token }
  }

  t.test('POST with a valid key: an HttpOnly, SameSite=Strict cookie on /dashboard, 15 minutes', async (t) => {
    const before = Date.now()
    const { res, token } = await startSession(KEY_A)
    t.equal(res.text, '{"expires_in_ms":900000}')
    const expiresAt = Number(token.split('.')[0])
    t.ok(expiresAt >= before + SESSION_TTL_MS && expiresAt <= Date.now() + SESSION_TTL_MS, 'expires 15 minutes from now')
    t.notOk(token.includes(KEY_A), 'the key is not in the token')
  })

  t.test('POST without a key or with a wrong one: 401, no cookie', async (t) => {
    const missing = await post(sessionUrl)
    t.same([missing.status, missing.text, missing.setCookie], [401, '{"error":"Missing x-api-key header"}', null])
    const wrong = await post(sessionUrl, { 'x-api-key': 'sk_wrong' })
    t.same([wrong.status, wrong.text, wrong.setCookie], [401, '{"error":"Invalid API Key"}', null])
  })

  t.test('the cookie opens every /dashboard GET', async (t) => {
    const { token } = await startSession(KEY_A)
    const cluster = await get(`${api.url}/dashboard/cluster`, withCookie(token))
    t.equal(cluster.status, 200)
    t.same(cluster.body, totals(7, 2, 1))
    const nodes = await get(`${api.url}/dashboard/nodes`, withCookie(token))
    t.equal(nodes.status, 200)
    t.equal((nodes.body as { nodes: { id: string }[] }).nodes[0]?.id, 'node-1')
  })

  t.test('a session from either configured key works', async (t) => {
    const { token } = await startSession(KEY_B)
    t.equal((await get(`${api.url}/dashboard/cluster`, withCookie(token))).status, 200)
  })

  t.test('the cookie does not open anything but GETs: a new session needs the key itself', async (t) => {
    const { token } = await startSession(KEY_A)
    const res = await post(sessionUrl, withCookie(token))
    t.same([res.status, res.text, res.setCookie], [401, '{"error":"Missing x-api-key header"}', null])
  })

  t.test('a header always wins over a cookie', async (t) => {
    const { token } = await startSession(KEY_A)
    const res = await get(`${api.url}/dashboard/cluster`, { ...withCookie(token), 'x-api-key': 'sk_wrong' })
    t.equal(res.status, 401)
    t.equal(res.text, '{"error":"Invalid API Key"}')
  })

  t.test('expired, dated too far ahead, tampered or garbage tokens: 401 Invalid or expired session', async (t) => {
    const digest = sha256(KEY_A)
    const now = Date.now()
    const { token } = await startSession(KEY_A)
    const [expiry, mac] = token.split('.') as [string, string]
    const flip = (c: string) => (c === 'A' ? 'B' : 'A')
    const bad = {
      expired: createSessionToken(digest, now - 1),
      'dated beyond a fresh session': createSessionToken(digest, now + SESSION_TTL_MS + 5 * 60_000),
      'expiry moved later, same MAC': `${Number(expiry) + 60_000}.${mac}`,
      'first MAC character changed': `${expiry}.${flip(mac[0]!)}${mac.slice(1)}`,
      'last MAC character changed': `${expiry}.${mac.slice(0, -1)}${flip(mac.at(-1)!)}`,
      'signed by an unknown key': createSessionToken(sha256('sk_not_configured'), now + 60_000),
      'signed with the key itself, not its digest': createSessionToken(Buffer.from(KEY_A), now + 60_000),
      'no MAC': expiry,
      empty: '',
      garbage: 'x'.repeat(57),
    }
    for (const [what, value] of Object.entries(bad)) {
      const res = await get(`${api.url}/dashboard/cluster`, withCookie(value))
      t.equal(res.status, 401, what)
      t.equal(res.text, '{"error":"Invalid or expired session"}', what)
    }
    t.equal((await get(`${api.url}/dashboard/cluster`, withCookie(token))).status, 200, 'the untouched token still works')
  })

  t.test('DELETE clears the cookie, with or without a credential', async (t) => {
    for (const headers of [{}, { 'x-api-key': KEY_A }] as Record<string, string>[]) {
      const res = await fetch(sessionUrl, { method: 'DELETE', headers })
      t.equal(res.status, 204)
      t.equal(await res.text(), '')
      t.equal(res.headers.get('set-cookie'), CLEARED)
    }
  })

  t.test('neither keys nor tokens reach the log', async (t) => {
    const { token } = await startSession(KEY_A)
    await get(`${api.url}/dashboard/cluster`, withCookie(token))
    const text = api.logs.text.join('\n')
    t.notOk(text.includes(token.split('.')[1]!), 'no token')
    t.notOk(text.includes(KEY_A), 'no key')
  })
})

t.test('stateless: another replica with the key accepts its tokens, one without it refuses them', async (t) => {
  const api = await startTestApi(t)
  const res = await post(`${api.url}/dashboard/session`, { 'x-api-key': KEY_B })
  const tokenOfB = COOKIE_LINE.exec(res.setCookie ?? '')![1]!
  const resA = await post(`${api.url}/dashboard/session`, { 'x-api-key': KEY_A })
  const tokenOfA = COOKIE_LINE.exec(resA.setCookie ?? '')![1]!

  // A second API on the same Redis whose configuration dropped KEY_A.
  const replica = await buildApp({
    config: loadApiConfig({ REDIS_URL: api.redisServer.url, TORNADO_API_KEYS: KEY_B }),
    logger: { stream: new LogCapture().stream },
  })
  t.teardown(() => replica.close())
  const ask = (token: string) =>
    replica.inject({ method: 'GET', url: '/dashboard/cluster', headers: { cookie: `tornado_session=${token}` } })
  const accepted = await ask(tokenOfB)
  t.equal(accepted.statusCode, 200)
  t.same(accepted.json(), totals(0, 0, 0))
  const refused = await ask(tokenOfA)
  t.equal(refused.statusCode, 401)
  t.same(refused.json(), { error: 'Invalid or expired session' })
})

t.test('verifySessionToken: the expiry when valid, else undefined', async (t) => {
  const digests = [sha256('one'), sha256('two')]
  const now = 1_800_000_000_000
  t.equal(verifySessionToken(createSessionToken(digests[1]!, now + 1), digests, now), now + 1, 'the last key matches')
  t.equal(verifySessionToken(createSessionToken(digests[0]!, now), digests, now), undefined, 'expires at exactly now')
  const skewed = now + SESSION_TTL_MS + 60_000
  t.equal(verifySessionToken(createSessionToken(digests[0]!, skewed), digests, now), skewed, 'a minute of clock skew')
  t.equal(verifySessionToken(createSessionToken(digests[0]!, skewed + 1), digests, now), undefined)
  t.equal(verifySessionToken(createSessionToken(digests[0]!, now + 1), [], now), undefined, 'no keys, no sessions')
})
