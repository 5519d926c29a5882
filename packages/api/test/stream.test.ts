import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { waitForReady } from '@tornado/shared'
import { get, heartbeat, KEY_A, startTestApi, type TestApi } from './helper.js'
import { sha256 } from '../src/config.js'
import { createSessionToken } from '../src/session.js'
import { nextNamed, nextWithData, openEventStream } from './sse-client.js'

const auth = { 'x-api-key': KEY_A }
const STREAM = '/dashboard/cluster/stream'

/** Counts the store's reads of the totals (every tick and every GET goes through it). */
function countTotalsReads(api: TestApi): { readonly count: number } {
  const store = api.app.store
  const original = store.readTotals.bind(store)
  const counter = { count: 0 }
  store.readTotals = () => {
    counter.count++
    return original()
  }
  return counter
}

async function until(what: string, condition: () => boolean, timeoutMs = 1_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`)
    await sleep(5)
  }
}

t.test('one cluster event a second, its data the body of GET /dashboard/cluster', async (t) => {
  const api = await startTestApi(t) // the real one-second tick
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 20, muxing: 5, uploading: 3 }))
  await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 25, muxing: 7, uploading: 5 }))
  const client = await openEventStream(`${api.url}${STREAM}`, auth)
  t.teardown(client.close)
  t.equal(client.status, 200)
  t.equal(client.headers['content-type'], 'text/event-stream; charset=utf-8')
  t.equal(client.headers['cache-control'], 'no-cache, no-store')
  t.equal(client.headers['x-accel-buffering'], 'no')

  const first = await client.next()
  const firstAt = Date.now()
  t.same(first, { event: 'cluster', data: '{"total_downloading":45,"total_muxing":12,"total_uploading":8}' })
  await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 0, muxing: 0, uploading: 0 }))
  const second = await client.next(2_000)
  const gap = Date.now() - firstAt
  t.same(second, { event: 'cluster', data: '{"total_downloading":20,"total_muxing":5,"total_uploading":3}' })
  t.ok(gap > 800 && gap < 1_300, `the second came ${gap} ms after the first`)
  t.equal(second.data, (await get(`${api.url}/dashboard/cluster`, auth)).text, 'byte for byte the GET body')
  t.equal(
    client.raw(),
    'retry: 2000\n\n' +
      'event: cluster\ndata: {"total_downloading":45,"total_muxing":12,"total_uploading":8}\n\n' +
      'event: cluster\ndata: {"total_downloading":20,"total_muxing":5,"total_uploading":3}\n\n',
    'nothing else on the wire',
  )
})

t.test('the shared ticker', async (t) => {
  const api = await startTestApi(t, {}, { streamIntervalMs: 200 })
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 3, muxing: 2, uploading: 1 }))
  const feed = api.app.clusterFeed

  t.test('?nodes=1 adds a nodes event each tick, the body of GET /dashboard/nodes', async (t) => {
    const client = await openEventStream(`${api.url}${STREAM}?nodes=1`, auth)
    t.teardown(client.close)
    const cluster = await client.next()
    const nodes = await client.next()
    t.same(cluster, { event: 'cluster', data: '{"total_downloading":3,"total_muxing":2,"total_uploading":1}' })
    t.equal(nodes.event, 'nodes')
    t.match(
      nodes.data,
      /^\{"nodes":\[\{"id":"node-1","hostname":"node-1\.example","ip":"10\.0\.0\.7","downloading":3,"muxing":2,"uploading":1,"last_seen_ms_ago":\d+,"status":"online"\}\]\}$/,
    )
    t.equal((await client.next()).event, 'cluster', 'then the next tick')
    t.equal((await client.next()).event, 'nodes')
  })

  t.test('two clients share one read per tick and get the same bytes', async (t) => {
    await until('no client left from before', () => !feed.running)
    const reads = countTotalsReads(api)
    const ticksBefore = feed.ticks
    const a = await openEventStream(`${api.url}${STREAM}`, auth)
    const b = await openEventStream(`${api.url}${STREAM}`, auth)
    t.teardown(() => {
      a.close()
      b.close()
    })
    await until('both subscribed', () => feed.subscriberCount === 2)
    const fromA = [await a.next(), await a.next(), await a.next()]
    const fromB = [await b.next(), await b.next(), await b.next()]
    t.same(fromB, fromA, 'the same events')
    t.equal(reads.count, feed.ticks - ticksBefore, `${reads.count} reads for ${feed.ticks - ticksBefore} ticks, not one per client`)
    // Six events delivered; a read per client would have taken about six reads, a shared one about four.
    t.ok(reads.count <= 5, `${reads.count} reads for six events to two clients`)
  })

  t.test('a client that goes away is removed at once, and the last one stops the ticker', async (t) => {
    await until('no client left from before', () => !feed.running)
    const reads = countTotalsReads(api)
    const a = await openEventStream(`${api.url}${STREAM}`, auth)
    const b = await openEventStream(`${api.url}${STREAM}?nodes=1`, auth)
    await a.next()
    await b.next()
    t.equal(feed.subscriberCount, 2)
    t.equal(feed.running, true)
    a.close()
    await until('the first client removed', () => feed.subscriberCount === 1, 500)
    t.equal(feed.running, true, 'still ticking for the other one')
    b.close()
    await until('the second client removed', () => feed.subscriberCount === 0, 500)
    t.equal(feed.running, false, 'no timer left')
    const readsWhenStopped = reads.count
    await sleep(600)
    t.equal(reads.count, readsWhenStopped, 'no reads without clients')
  })

  t.test('a new client after a pause starts the ticker again, with an immediate event', async (t) => {
    await until('no client left from before', () => !feed.running)
    const started = Date.now()
    const client = await openEventStream(`${api.url}${STREAM}`, auth)
    t.teardown(client.close)
    t.equal((await client.next()).event, 'cluster')
    t.ok(Date.now() - started < 150, `first event after ${Date.now() - started} ms`)
  })
})

t.test('Redis away: an error event each tick, the stream stays open and resumes', async (t) => {
  const api = await startTestApi(t, {}, { streamIntervalMs: 200 })
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 1, muxing: 1, uploading: 1 }))
  const plain = await openEventStream(`${api.url}${STREAM}`, auth)
  const withNodes = await openEventStream(`${api.url}${STREAM}?nodes=1`, auth)
  t.teardown(() => {
    plain.close()
    withNodes.close()
  })
  await nextNamed(plain, 'cluster')
  await api.redisServer.stop()
  t.same(await nextNamed(plain, 'error'), { event: 'error', data: '{"error":"Redis unavailable"}' })
  const error = await nextNamed(withNodes, 'error')
  t.same(error, { event: 'error', data: '{"error":"Redis unavailable"}' })
  const afterError = await withNodes.next()
  t.same(afterError, { event: 'error', data: '{"error":"Redis unavailable"}' }, 'one error per tick, not one per event kind')
  t.equal(api.logs.withMessage('Redis unavailable: answering 503 until it returns').length, 1, 'the outage logged once')

  await api.redisServer.restart()
  t.equal(await waitForReady(api.agentRedis, 5_000), true)
  await api.agentStore.writeHeartbeat(heartbeat('node-2', { downloading: 4, muxing: 0, uploading: 2 }))
  // A tick between Redis's return and this beat shows the empty Redis (zeros): wait for the beat's totals.
  t.same(await nextWithData(plain, 'cluster', '{"total_downloading":4,"total_muxing":0,"total_uploading":2}'), {
    event: 'cluster',
    data: '{"total_downloading":4,"total_muxing":0,"total_uploading":2}',
  })
  t.equal((await nextNamed(withNodes, 'nodes', 5_000, 40)).event, 'nodes')
  t.equal(api.app.clusterFeed.subscriberCount, 2, 'both streams stayed open')
})

t.test('credentials and bad queries', async (t) => {
  const api = await startTestApi(t, {}, { streamIntervalMs: 200 })

  t.test('no credential: 401 JSON, no stream', async (t) => {
    const client = await openEventStream(`${api.url}${STREAM}`)
    await client.ended
    t.equal(client.status, 401)
    t.equal(client.raw(), '{"error":"Missing x-api-key header"}')
    t.equal(api.app.clusterFeed.subscriberCount, 0)
  })

  t.test('a wrong key: 401 Invalid API Key', async (t) => {
    const client = await openEventStream(`${api.url}${STREAM}`, { 'x-api-key': 'sk_wrong' })
    await client.ended
    t.equal(client.status, 401)
    t.equal(client.raw(), '{"error":"Invalid API Key"}')
  })

  t.test('the session cookie, as a browser EventSource sends it', async (t) => {
    const session = await fetch(`${api.url}/dashboard/session`, { method: 'POST', headers: auth })
    const cookie = session.headers.get('set-cookie')!.split(';')[0]!
    const client = await openEventStream(`${api.url}${STREAM}`, { cookie })
    t.teardown(client.close)
    t.equal(client.status, 200)
    t.same(await client.next(), { event: 'cluster', data: '{"total_downloading":0,"total_muxing":0,"total_uploading":0}' })
    const bad = await openEventStream(`${api.url}${STREAM}`, { cookie: `${cookie.slice(0, -1)}x` })
    await bad.ended
    t.equal(bad.status, 401)
    t.equal(bad.raw(), '{"error":"Invalid or expired session"}')
  })

  t.test('a stream opened with a session ends when the session does', async (t) => {
    const token = createSessionToken(sha256(KEY_A), Date.now() + 600)
    const client = await openEventStream(`${api.url}${STREAM}`, { cookie: `tornado_session=${token}` })
    t.equal(client.status, 200)
    t.equal((await client.next()).event, 'cluster')
    await client.ended
    const endedAfter = Date.now() - Number(token.split('.')[0])
    t.ok(endedAfter >= 0 && endedAfter < 500, `ended ${endedAfter} ms after the session expired`)
    await until('the client removed', () => api.app.clusterFeed.subscriberCount === 0)
  })

  t.test('HEAD is not a way to subscribe', async (t) => {
    const res = await fetch(`${api.url}${STREAM}`, { method: 'HEAD', headers: auth })
    t.equal(res.status, 404)
    t.equal(api.app.clusterFeed.subscriberCount, 0)
  })

  t.test('?nodes=maybe: 400', async (t) => {
    const res = await get(`${api.url}${STREAM}?nodes=maybe`, auth)
    t.equal(res.status, 400)
    t.equal(res.text, '{"error":"querystring/nodes must be equal to one of the allowed values"}')
  })
})

t.test('closing the app ends open streams instead of waiting for them', async (t) => {
  const api = await startTestApi(t, {}, { streamIntervalMs: 200 })
  const client = await openEventStream(`${api.url}${STREAM}`, auth)
  await client.next()
  const started = Date.now()
  await api.app.close()
  await client.ended
  t.ok(Date.now() - started < 1_000, `closed in ${Date.now() - started} ms`)
  t.equal(api.app.clusterFeed.running, false)
  t.equal(api.app.clusterFeed.subscriberCount, 0)
})
