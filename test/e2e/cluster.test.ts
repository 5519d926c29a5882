import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { listeningUrl, rssKb, startProcess, until, type Running } from './processes.js'

// The whole system as operators run it: a real redis-server, tornado-api and three tornado-agent processes.
const API_KEY = 'sk_e2e_9d1b6c0f2a7e4b38'
const STALE_AFTER_MS = 3000
const OUTAGE_MS = 5000
const EXPECTED = '{"total_downloading":6,"total_muxing":2,"total_uploading":6}'
const UNAVAILABLE = '{"error":"Redis unavailable"}'

t.test('agents -> Redis -> API, through restarts, kills and a Redis that comes back empty', async (t) => {
  const redis = await RedisServer.start()
  t.teardown(() => redis.stop())
  const common = { REDIS_URL: redis.url, STALE_AFTER_MS: String(STALE_AFTER_MS), LOG_LEVEL: 'info' }

  const api = startProcess(t, 'api', { ...common, TORNADO_API_KEYS: API_KEY, PORT: '0', HOST: '127.0.0.1' })
  const apiUrl = await listeningUrl(api)
  const cluster = async () => {
    const response = await fetch(`${apiUrl}/dashboard/cluster`, { headers: { 'x-api-key': API_KEY } })
    return { status: response.status, body: await response.json() }
  }
  const totalsAre = (d: number, m: number, u: number) => async () => {
    const { status, body } = await cluster()
    const expected = { total_downloading: d, total_muxing: m, total_uploading: u }
    return status === 200 && JSON.stringify(body) === JSON.stringify(expected) ? body : undefined
  }

  const agents = new Map<string, { process: Running; url: string }>()
  const startAgent = async (nodeId: string) => {
    const listen = `127.0.0.1:${await freePort()}`
    const process = startProcess(t, 'agent', { ...common, TORNADO_NODE_ID: nodeId, AGENT_LISTEN: listen })
    const url = `http://${listen}`
    await until(`agent ${nodeId} answering`, async () => ((await fetch(`${url}/counts`)).ok ? true : undefined), 20_000)
    agents.set(nodeId, { process, url })
    return url
  }
  const putCounts = async (nodeId: string, counts: object) => {
    const response = await fetch(`${agents.get(nodeId)!.url}/counts`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(counts),
    })
    t.equal(response.status, 204, `PUT /counts on ${nodeId}`)
  }

  await Promise.all(['node-a', 'node-b', 'node-c'].map(startAgent))
  await putCounts('node-a', { downloading: 3, muxing: 1, uploading: 0 })
  await putCounts('node-b', { downloading: 2, muxing: 0, uploading: 5 })
  await putCounts('node-c', { downloading: 1, muxing: 1, uploading: 1 })
  // PUT /counts is written at once, not at the next tick.
  t.same(await until('totals of three agents', totalsAre(6, 2, 6), 500), { total_downloading: 6, total_muxing: 2, total_uploading: 6 })

  await t.test('Redis killed (SIGKILL) and restarted empty: 503 within a second, agents up, exact within 2 s of its return', async (t) => {
    const rssBefore = new Map([...agents].map(([id, { process }]) => [id, rssKb(process.child.pid!)]))
    const killedAt = Date.now()
    await redis.kill()
    const polls: { atMs: number; elapsedMs: number; status: number; text: string }[] = []
    while (Date.now() - killedAt < OUTAGE_MS) {
      const started = Date.now()
      const response = await fetch(`${apiUrl}/dashboard/cluster`, { headers: { 'x-api-key': API_KEY } })
      polls.push({ atMs: started - killedAt, elapsedMs: Date.now() - started, status: response.status, text: await response.text() })
      await sleep(100)
    }
    const slow = polls.filter((poll) => poll.elapsedMs >= 1000)
    t.same(slow, [], 'every request answered within a second')
    const firstUnavailable = polls.findIndex((poll) => poll.status === 503)
    t.ok(firstUnavailable >= 0 && polls[firstUnavailable]!.atMs < 1000, `the first 503 within a second (at ${polls[firstUnavailable]?.atMs} ms)`)
    // Before it, only a read that started before the kill, reused for TOTALS_CACHE_MS (250 ms): the exact totals.
    t.same(new Set(polls.slice(0, firstUnavailable).map((poll) => poll.text)), new Set(firstUnavailable > 0 ? [EXPECTED] : []))
    t.same(new Set(polls.slice(firstUnavailable).map((poll) => `${poll.status} ${poll.text}`)), new Set([`503 ${UNAVAILABLE}`]), 'then 503 only')
    for (const [nodeId, { process }] of agents) {
      t.equal(process.child.exitCode, null, `${nodeId} stays up`)
      const grownKb = rssKb(process.child.pid!) - rssBefore.get(nodeId)!
      t.comment(`${nodeId} RSS ${grownKb >= 0 ? "+" : ""}${grownKb} kB over ${OUTAGE_MS / 1000} s of outage`)
      t.ok(grownKb < 20 * 1024, `${nodeId} RSS grew less than 20 MB`)
    }
    await redis.restart()
    const back = Date.now()
    await until('totals exact again', totalsAre(6, 2, 6), 2000)
    t.ok(Date.now() - back <= 2000, `exact again ${Date.now() - back} ms after Redis returned`)
    for (const [nodeId, { process }] of agents) {
      const events = process
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => (JSON.parse(line) as { event?: string }).event)
      t.same(
        [events.filter((event) => event === 'redis_down').length, events.filter((event) => event === 'redis_recovered').length],
        [1, 1],
        `${nodeId} logged the outage once and its end once`,
      )
    }
  })

  await t.test('SIGTERM: the node leaves the totals at once', async (t) => {
    const { process } = agents.get('node-c')!
    process.child.kill('SIGTERM')
    t.equal(await process.exited, 0)
    // At once: within the API's default reuse window of 250 ms.
    t.same(await until('node-c gone', totalsAre(5, 1, 5), 400), { total_downloading: 5, total_muxing: 1, total_uploading: 5 })
  })

  await t.test('SIGKILL: the node counts until it is stale, then leaves', async (t) => {
    const { process } = agents.get('node-b')!
    process.child.kill('SIGKILL')
    await process.exited
    t.same(await cluster(), { status: 200, body: { total_downloading: 5, total_muxing: 1, total_uploading: 5 } })
    const killedAt = Date.now()
    await until('node-b gone', totalsAre(3, 1, 0), STALE_AFTER_MS + 2000)
    t.ok(Date.now() - killedAt >= STALE_AFTER_MS - 1100, 'not before it went stale')
  })

  await t.test('a restarted agent with the same id is never counted twice', async (t) => {
    const { process } = agents.get('node-a')!
    process.child.kill('SIGKILL')
    await process.exited
    await startAgent('node-a')
    await putCounts('node-a', { downloading: 3, muxing: 1, uploading: 0 })
    await new Promise((resolve) => setTimeout(resolve, 1200))
    t.same(await cluster(), { status: 200, body: { total_downloading: 3, total_muxing: 1, total_uploading: 0 } })
  })

  for (const { process } of agents.values()) if (process.child.exitCode === null) process.child.kill('SIGTERM')
  api.child.kill('SIGTERM')
  t.equal(await api.exited, 0, 'the API stops cleanly on SIGTERM')
  t.notMatch(api.output(), API_KEY, 'the key is never logged')
})
