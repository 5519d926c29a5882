import t from 'tap'
import { setTimeout as sleep } from 'node:timers/promises'
import { ClusterFeed, sseEvent, type FeedClient, type TickChunks } from '../src/stream/cluster-feed.js'

function recorder(wantsNodes: boolean) {
  const received: string[] = []
  let ended = false
  const client: FeedClient = { wantsNodes, send: (chunk) => received.push(chunk), end: () => (ended = true) }
  return { client, received, ended: () => ended }
}

t.test('sseEvent: one event, its data one line of JSON', async (t) => {
  t.equal(sseEvent('cluster', { a: 1, b: 'x\ny' }), 'event: cluster\ndata: {"a":1,"b":"x\\ny"}\n\n')
})

t.test('ClusterFeed: produce once per tick for everyone, each kind of client its own text', async (t) => {
  const calls: boolean[] = []
  const feed = new ClusterFeed(
    async (withNodes): Promise<TickChunks> => {
      calls.push(withNodes)
      return { cluster: `c${calls.length}`, clusterAndNodes: `cn${calls.length}` }
    },
    () => t.fail('no error expected'),
    50,
  )
  t.equal(feed.running, false, 'idle until someone listens')
  const plain = recorder(false)
  const unsubscribePlain = feed.subscribe(plain.client)
  await sleep(0)
  t.same(plain.received, ['c1'], 'an immediate first tick')
  t.same(calls, [false], 'nodes not read when nobody wants them')
  const nodes = recorder(true)
  const unsubscribeNodes = feed.subscribe(nodes.client)
  await sleep(120)
  t.ok(calls.length >= 3, `${calls.length} ticks`)
  t.same(calls.slice(1), calls.slice(1).map(() => true), 'nodes read while someone wants them')
  t.same(nodes.received, calls.slice(1).map((_, i) => `cn${i + 2}`))
  t.equal(plain.received.length, calls.length)
  unsubscribeNodes()
  unsubscribeNodes() // twice is harmless
  t.equal(feed.subscriberCount, 1)
  unsubscribePlain()
  t.equal(feed.running, false, 'the last one out stops the timer')
  const ticks = feed.ticks
  await sleep(120)
  t.equal(feed.ticks, ticks, 'and no tick runs after')
})

t.test('ClusterFeed: a slow read skips ticks rather than overlapping them', async (t) => {
  let concurrent = 0
  let maxConcurrent = 0
  const feed = new ClusterFeed(
    async () => {
      concurrent++
      maxConcurrent = Math.max(maxConcurrent, concurrent)
      await sleep(70)
      concurrent--
      return { cluster: 'c', clusterAndNodes: 'cn' }
    },
    () => {},
    20,
  )
  const { client, received } = recorder(false)
  const unsubscribe = feed.subscribe(client)
  await sleep(250)
  unsubscribe()
  t.equal(maxConcurrent, 1)
  t.ok(received.length >= 2 && received.length <= 4, `${received.length} ticks delivered in 250 ms of 70 ms reads`)
})

t.test('ClusterFeed: a failing produce is reported and the ticker goes on; close ends every client', async (t) => {
  const errors: unknown[] = []
  let n = 0
  const feed = new ClusterFeed(
    async () => {
      if (++n === 1) throw new Error('bug')
      return { cluster: 'c', clusterAndNodes: 'cn' }
    },
    (err) => errors.push(err),
    20,
  )
  const a = recorder(false)
  const b = recorder(true)
  feed.subscribe(a.client)
  feed.subscribe(b.client)
  await sleep(70)
  t.equal((errors[0] as Error).message, 'bug')
  t.ok(a.received.length >= 1, 'later ticks still delivered')
  feed.close()
  t.equal(a.ended() && b.ended(), true)
  t.equal(feed.running, false)
  t.equal(feed.subscriberCount, 0)
})
