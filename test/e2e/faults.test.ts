import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { shardKeys } from '@tornado/shared'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { listeningUrl, rssKb, startProcess, until, type Running } from './processes.js'

// Faults injected under the whole system as operators run it: a real redis-server, tornado-api and three agents.
const API_KEY = 'sk_e2e_faults_5c1e9a7d3b'
const UNAVAILABLE = '{"error":"Redis unavailable"}'
const EXPECTED = '{"total_downloading":6,"total_muxing":2,"total_uploading":6}'
const PAUSE_MS = 5000
const BURST_WINDOW_MS = 200

interface Poll {
  startedMs: number
  elapsedMs: number
  status: number
  text: string
}

/** The `dropped` counts a process logged: the API's warning and the agent's garbage_dropped event. */
function droppedCounts(output: string): number[] {
  return output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as { level?: number; msg?: string; event?: string; dropped?: number })
    .filter((entry) => entry.level === 40 && (entry.event === 'garbage_dropped' || entry.msg === 'dropped garbage heartbeat records from the store'))
    .map((entry) => entry.dropped!)
}

/** A MONITOR line's time (Redis's clock, the host's clock here) in ms. */
const monitorMs = (time: string) => Math.round(Number(time) * 1000)

t.test('faults under running processes', async (t) => {
  const redis = await RedisServer.start()
  t.teardown(() => redis.stop())
  const common = { REDIS_URL: redis.url, LOG_LEVEL: 'info' }
  const api = startProcess(t, 'api', { ...common, TORNADO_API_KEYS: API_KEY, PORT: '0', HOST: '127.0.0.1' })
  const agents = new Map<string, { process: Running; url: string }>()
  const startAgent = async (nodeId: string, counts: object) => {
    const listen = `127.0.0.1:${await freePort()}`
    const process = startProcess(t, 'agent', { ...common, TORNADO_NODE_ID: nodeId, AGENT_LISTEN: listen })
    const url = `http://${listen}`
    await until(`agent ${nodeId} answering`, async () => ((await fetch(`${url}/counts`)).ok ? true : undefined), 20_000)
    const put = await fetch(`${url}/counts`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(counts) })
    t.equal(put.status, 204, `PUT /counts on ${nodeId}`)
    agents.set(nodeId, { process, url })
  }
  const [apiUrl] = await Promise.all([
    listeningUrl(api),
    startAgent('node-a', { downloading: 3, muxing: 1, uploading: 0 }),
    startAgent('node-b', { downloading: 2, muxing: 0, uploading: 5 }),
    startAgent('node-c', { downloading: 1, muxing: 1, uploading: 1 }),
  ])
  const poll = async (): Promise<Poll> => {
    const startedMs = Date.now()
    const response = await fetch(`${apiUrl}/dashboard/cluster`, { headers: { 'x-api-key': API_KEY } })
    const text = await response.text()
    return { startedMs, elapsedMs: Date.now() - startedMs, status: response.status, text }
  }
  await until('totals of three agents', async () => ((await poll()).text === EXPECTED ? true : undefined), 2000)

  await t.test('Redis paused 5 s: no request hangs, the agents stay up, no burst of queued beats on SIGCONT', async (t) => {
    const beats: { atMs: number; nodeId: string }[] = []
    const monitorClient = redis.client()
    t.teardown(() => monitorClient.disconnect())
    const monitor = await monitorClient.monitor()
    t.teardown(() => monitor.disconnect())
    monitor.on('monitor', (time: string, args: string[]) => {
      // A beat is EVALSHA of the beat script: 3 keys and 11 arguments, the node id first (heartbeat-store.ts).
      if (args[0]?.toLowerCase() === 'evalsha' && args[2] === '3' && args.length === 17) beats.push({ atMs: monitorMs(time), nodeId: args[6]! })
    })
    const rssBefore = new Map([...agents].map(([id, { process }]) => [id, rssKb(process.child.pid!)]))

    const polls: Poll[] = []
    let polling = true
    t.teardown(() => {
      polling = false
    })
    const poller = (async () => {
      while (polling) {
        polls.push(await poll())
        await sleep(50)
      }
    })()

    await sleep(300)
    redis.pause()
    const pausedAt = Date.now()
    t.teardown(() => redis.resume())
    await sleep(PAUSE_MS - 1500)
    for (const [nodeId, { url }] of agents) {
      const health = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) })
      t.same([health.status, await health.json()], [200, { status: 'ok', node_id: nodeId, redis: 'down' }], `${nodeId} answers /health while Redis is paused`)
    }
    await sleep(pausedAt + PAUSE_MS - Date.now())
    redis.resume()
    const resumedAt = Date.now()
    await sleep(2500)
    polling = false
    await poller

    const late = polls.filter((p) => p.elapsedMs >= 1500)
    t.same(late, [], 'every request answered within 1.5 s')
    t.comment(`slowest answer ${Math.max(...polls.map((p) => p.elapsedMs))} ms over ${polls.length} requests`)
    const during = polls.filter((p) => p.startedMs >= pausedAt + 300 && p.startedMs + p.elapsedMs <= resumedAt)
    t.ok(during.length >= 5, `${during.length} requests while paused`)
    t.same(during.filter((p) => p.status !== 503 || p.text !== UNAVAILABLE), [], 'all 503 {"error":"Redis unavailable"} while paused')
    // The first read waits out the 1 s command timeout, which drops the connection; then 503s come at once.
    const slowAfterFirst = during.filter((p) => p.startedMs >= pausedAt + 1500 && p.elapsedMs > 300)
    t.same(slowAfterFirst, [], 'after the first timeout, no answer waits on the paused Redis')
    const exactOr503 = (p: Poll) => (p.status === 200 && p.text === EXPECTED) || (p.status === 503 && p.text === UNAVAILABLE)
    t.same(polls.filter((p) => !exactOr503(p)), [], 'every answer, before, during and after: 503 or the exact totals')
    const after = polls.filter((p) => p.startedMs > resumedAt)
    t.same(after.filter((p) => p.startedMs > resumedAt + 2000).map((p) => [p.status, p.text]).slice(-1), [[200, EXPECTED]], '200 with the exact totals at the end')
    const firstExact = after.find((p) => p.text === EXPECTED)
    t.ok(firstExact && firstExact.startedMs + firstExact.elapsedMs - resumedAt <= 2000, `exact totals ${firstExact ? firstExact.startedMs + firstExact.elapsedMs - resumedAt : '-'} ms after SIGCONT`)

    // Each agent's beat in flight when its command timed out was already in Redis's socket buffer: Redis runs it on
    // SIGCONT. Before redis-client.ts dropped the connection on a timeout, every later beat queued behind it too
    // (measured: 5, 6 and 5 per agent in these 200 ms).
    const inWindow = beats.filter((b) => b.atMs >= resumedAt && b.atMs < resumedAt + BURST_WINDOW_MS)
    const perAgent = [...agents.keys()].map((id) => inWindow.filter((b) => b.nodeId === id).length)
    const offsets = beats.filter((b) => b.atMs >= resumedAt && b.atMs < resumedAt + 2000).map((b) => `${b.nodeId} +${b.atMs - resumedAt}`)
    t.comment(`beats Redis ran in the first ${BURST_WINDOW_MS} ms after SIGCONT: ${perAgent.join(', ')} (per agent); in the first 2 s: ${offsets.join(', ')} ms`)
    t.ok(perAgent.every((n) => n <= 1), 'at most one beat per agent right after SIGCONT: no queued beats replayed')
    t.ok(beats.some((b) => b.atMs >= resumedAt), 'beats resumed')

    for (const [nodeId, { process, url }] of agents) {
      t.equal(process.child.exitCode, null, `${nodeId} still running`)
      const health = await fetch(`${url}/health`)
      t.same([health.status, await health.json()], [200, { status: 'ok', node_id: nodeId, redis: 'up' }])
      const before = rssBefore.get(nodeId)!
      const now = rssKb(process.child.pid!)
      t.comment(`${nodeId} RSS ${Math.round(before / 1024)} MB before the pause, ${Math.round(now / 1024)} MB after`)
      t.ok(now - before < 50 * 1024, `${nodeId} RSS grew less than 50 MB`)
    }
  })

  await t.test('garbage under the prefix: the good nodes stay exact, no request fails, the drops are logged', async (t) => {
    const raw = redis.client()
    t.teardown(() => raw.disconnect())
    const keys = shardKeys({ prefix: 'tornado' }, 0)
    const record = (nodeId: string) => `${keys.nodePrefix}${nodeId}`
    const apiDrops = () => droppedCounts(api.output())
    const agentDrops = (nodeId: string) => droppedCounts(agents.get(nodeId)!.process.output())
    const allDrops = () => [...apiDrops(), ...[...agents.keys()].flatMap(agentDrops)].reduce((sum, n) => sum + n, 0)
    const nodes = async () => {
      const response = await fetch(`${apiUrl}/dashboard/nodes`, { headers: { 'x-api-key': API_KEY } })
      const body = (await response.json()) as { nodes: { id: string; downloading: number; muxing: number; uploading: number }[] }
      return [response.status, body.nodes.map((n) => `${n.id} ${n.downloading}/${n.muxing}/${n.uploading}`)]
    }
    const GOOD_NODES = [200, ['node-a 3/1/0', 'node-b 2/0/5', 'node-c 1/1/1']]
    await until('totals exact after the pause', async () => ((await poll()).text === EXPECTED ? true : undefined), 3000)
    const apiBefore = apiDrops().length

    const polls: Poll[] = []
    let polling = true
    t.teardown(() => {
      polling = false
    })
    const poller = (async () => {
      while (polling) {
        polls.push(await poll())
        await sleep(50)
      }
    })()

    // Members of the node set whose records are garbage, of every kind: the totals never counted them.
    const [seconds] = await raw.time()
    const seen = Number(seconds) * 1000
    const junk: Record<string, string> = {
      'junk-types': `three|one|zero|${seen}||i-junk|10.0.0.9|junk`,
      'junk-missing': '3|1',
      'junk-negative': `-5|0|0|${seen}||i-junk|10.0.0.9|junk`,
      'junk-huge': `1e300|0|0|${seen}||i-junk|10.0.0.9|junk`,
      'junk-json': '{"downloading":3,"muxing":',
    }
    const multi = raw.multi()
    for (const [id, text] of Object.entries(junk)) multi.zadd(keys.nodes, seen, id).set(record(id), text)
    await multi.zadd(keys.nodes, seen, 'junk-hash').hset(record('junk-hash'), 'downloading', '3').exec()
    t.equal((await poll()).text, EXPECTED, 'the totals never counted them')
    t.same(await nodes(), GOOD_NODES, 'the node list leaves them out')
    const logged = await until('the API logs the drop', async () => (apiDrops().length > apiBefore ? apiDrops().slice(apiBefore) : undefined), 2000)
    t.same(logged, [6], 'the API logs the 6 records it dropped, in one line')
    t.same((await raw.zrange(keys.nodes, 0, -1)).sort(), ['node-a', 'node-b', 'node-c'], 'and they are gone')

    // An agent's own record turned to garbage: the totals keep its last good counts, and its next beat finds the
    // garbage, drops it and recounts. One at a time: a recount drops every member whose record is garbage, and
    // such a node is out of the totals until its next beat.
    const [seconds2] = await raw.time()
    const damages: [string, () => Promise<unknown>][] = [
      ['node-a', () => raw.set(record('node-a'), `-5|1|0|${Number(seconds2) * 1000}||i-a|127.0.0.1|a`)],
      ['node-b', () => raw.set(record('node-b'), '{"downloading":2,')],
      ['node-c', () => raw.multi().del(record('node-c')).hset(record('node-c'), 'downloading', '1').exec()],
    ]
    for (const [nodeId, damage] of damages) {
      await damage()
      const logged = await until(`${nodeId} logs the drop`, async () => (agentDrops(nodeId).length > 0 ? agentDrops(nodeId) : undefined), 3000)
      t.same(logged, [1], `${nodeId} logs {"event":"garbage_dropped","dropped":1}`)
      t.match(await raw.get(record(nodeId)), /^\d+\|\d+\|\d+\|\d+\|\d+\|[^|]+\|/, `${nodeId} rewrote its record`)
    }
    t.same(await nodes(), GOOD_NODES, 'every node listed again')

    // The totals key of the wrong type, or with a negative or an absurd value: rebuilt at the next read.
    for (const damage of [
      () => raw.multi().del(keys.totals).rpush(keys.totals, '6', '2', '6').exec(),
      () => raw.hset(keys.totals, 'downloading', '-5'),
      () => raw.hset(keys.totals, 'muxing', '1e300'),
    ]) {
      const logged = apiDrops().length
      await damage()
      const lines = await until('the API logs the drop', async () => (apiDrops().length > logged ? apiDrops().slice(logged) : undefined), 2000)
      t.same(lines, [1], 'the API logs the one key it dropped')
      t.equal((await poll()).text, EXPECTED, 'the totals rebuilt')
    }

    // The node set of the wrong type: the first script to touch it (a read or a beat) rebuilds it from the records.
    const droppedBefore = allDrops()
    await raw.multi().del(keys.nodes).set(keys.nodes, 'not a zset').exec()
    await until('the node set rebuilt', async () => ((await raw.type(keys.nodes)) === 'zset' ? true : undefined), 2000)
    t.same((await raw.zrange(keys.nodes, 0, -1)).sort(), ['node-a', 'node-b', 'node-c'], 'every good node is still a member')
    await until('the drop logged', async () => (allDrops() > droppedBefore ? true : undefined), 1000)
    t.equal(allDrops() - droppedBefore, 1, 'one process logs the one key it dropped')
    t.same(await nodes(), GOOD_NODES, 'every node listed')

    await sleep(300)
    polling = false
    await poller
    t.ok(polls.length >= 20, `${polls.length} requests meanwhile`)
    t.same(polls.filter((p) => p.status !== 200 || p.text !== EXPECTED), [], 'every one 200 with the exact totals')
  })

  for (const { process } of agents.values()) process.child.kill('SIGTERM')
  for (const { process } of agents.values()) t.equal(await process.exited, 0, 'agent stops cleanly')
  api.child.kill('SIGTERM')
  t.equal(await api.exited, 0, 'the API stops cleanly on SIGTERM')
  t.notMatch(api.output(), API_KEY, 'the key is never logged')
})
