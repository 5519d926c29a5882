import t, { type Test } from 'tap'
import { GENERATED_KEY_FORMAT } from '../src/api-keys.js'
import { runKeysCommand } from '../src/keys-cli.js'
import { get, heartbeat, KEY_A, startTestApi, type TestApi } from './helper.js'
import { nextNamed, openEventStream, type EventStreamClient } from './sse-client.js'

const STREAM = '/dashboard/cluster/stream'
const CLUSTER = '{"total_downloading":4,"total_muxing":1,"total_uploading":2}'
const REVOKED = 'event: error\ndata: {"error":"API key revoked"}\n\n'

/** `tornado-api keys ...`, in-process, against the test's Redis. */
async function keys(api: TestApi, ...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = ''
  let err = ''
  const code = await runKeysCommand(argv, { REDIS_URL: api.redisServer.url }, { out: (s) => (out += s), err: (s) => (err += s) })
  return { code, out, err }
}

async function createKey(api: TestApi, name: string): Promise<{ key: string; id: string }> {
  const res = await keys(api, 'create', '--name', name)
  const key = res.out.trim()
  const id = /^Created key ([0-9a-f]{16}) /.exec(res.err)?.[1]
  if (res.code !== 0 || !GENERATED_KEY_FORMAT.test(key) || !id) throw new Error(`keys create failed: ${res.err}`)
  return { key, id }
}

async function revoke(t: Test, api: TestApi, id: string): Promise<number> {
  t.same(await keys(api, 'revoke', id), { code: 0, out: `Revoked key ${id}\n`, err: '' })
  return Date.now()
}

/** Resolves with how long after `sinceMs` the stream ended, or rejects after timeoutMs. */
async function endedWithin(client: EventStreamClient, sinceMs: number, timeoutMs: number): Promise<number> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`stream still open after ${timeoutMs} ms`)), timeoutMs)))
  try {
    await Promise.race([client.ended, timeout])
  } finally {
    clearTimeout(timer)
  }
  return Date.now() - sinceMs
}

t.test('revoking a key ends the streams it opened, within about a second, and a reconnect is refused', async (t) => {
  const api = await startTestApi(t)
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 4, muxing: 1, uploading: 2 }))
  const doomed = await createKey(api, 'wall screen')
  const kept = await createKey(api, 'ops laptop')

  const post = await fetch(`${api.url}/dashboard/session`, { method: 'POST', headers: { 'x-api-key': doomed.key } })
  t.equal(post.status, 200)
  const cookie = (post.headers.get('set-cookie') ?? '').split(';')[0]!

  const byHeader = await openEventStream(`${api.url}${STREAM}`, { 'x-api-key': doomed.key })
  const byCookie = await openEventStream(`${api.url}${STREAM}?nodes=1`, { cookie })
  const byOtherKey = await openEventStream(`${api.url}${STREAM}`, { 'x-api-key': kept.key })
  const byEnvKey = await openEventStream(`${api.url}${STREAM}`, { 'x-api-key': KEY_A })
  for (const client of [byHeader, byCookie, byOtherKey, byEnvKey]) {
    t.teardown(client.close)
    t.equal(client.status, 200)
    t.same(await nextNamed(client, 'cluster'), { event: 'cluster', data: CLUSTER })
  }

  const revokedAt = await revoke(t, api, doomed.id)
  const [headerMs, cookieMs] = await Promise.all([endedWithin(byHeader, revokedAt, 3_000), endedWithin(byCookie, revokedAt, 3_000)])
  t.comment(`streams ended ${headerMs} ms (x-api-key) and ${cookieMs} ms (session cookie) after the revoke`)
  t.ok(headerMs <= 1_500 && cookieMs <= 1_500, 'both within about a second')
  for (const client of [byHeader, byCookie]) t.ok(client.raw().endsWith(REVOKED), 'the last event says why')
  t.equal(byHeader.raw().split(REVOKED).length, 2, 'said once')

  const again = await openEventStream(`${api.url}${STREAM}`, { 'x-api-key': doomed.key })
  t.teardown(again.close)
  await again.ended
  t.same([again.status, JSON.parse(again.raw())], [401, { error: 'Invalid API Key' }], 'a reconnect with the key is refused')
  const againByCookie = await openEventStream(`${api.url}${STREAM}`, { cookie })
  t.teardown(againByCookie.close)
  await againByCookie.ended
  t.same([againByCookie.status, JSON.parse(againByCookie.raw())], [401, { error: 'Invalid or expired session' }], 'and with its session')
  t.same((await get(`${api.url}/dashboard/cluster`, { cookie })).body, { error: 'Invalid or expired session' })

  // Other keys' streams go on.
  for (const client of [byOtherKey, byEnvKey]) t.same(await nextNamed(client, 'cluster', 2_000), { event: 'cluster', data: CLUSTER })
  t.notOk(byOtherKey.raw().includes('revoked') || byEnvKey.raw().includes('revoked'))

  const ends = api.logs.withMessage('event stream ended: its API key was revoked')
  t.equal(ends.length, 2, 'one log line per stream ended')
  const text = api.logs.text.join('\n')
  t.notOk(text.includes(doomed.key) || text.includes(kept.key) || text.includes(cookie.split('=')[1]!), 'no key or token in the log')
})

t.test('Redis paused: the stream stays open saying so; back, the key is checked again and its revocation still ends it', async (t) => {
  const api = await startTestApi(t)
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 4, muxing: 1, uploading: 2 }))
  const made = await createKey(api, 'soon revoked')
  const client = await openEventStream(`${api.url}${STREAM}`, { 'x-api-key': made.key })
  t.teardown(client.close)
  t.same(await nextNamed(client, 'cluster'), { event: 'cluster', data: CLUSTER })
  api.redisServer.pause()
  t.teardown(() => api.redisServer.resume())
  t.same(await nextNamed(client, 'error', 3_000), { event: 'error', data: '{"error":"Redis unavailable"}' }, 'open, saying Redis is away')
  api.redisServer.resume()
  t.same(await nextNamed(client, 'cluster', 4_000), { event: 'cluster', data: CLUSTER }, 'Redis back, the key still valid: data again')
  const revokedAt = await revoke(t, api, made.id)
  const ms = await endedWithin(client, revokedAt, 3_000)
  t.ok(ms <= 1_500, `then revoked: ended ${ms} ms later`)
  t.ok(client.raw().endsWith(REVOKED))
})
