import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { ERROR, WARN, events, inspect, putCounts, startTestAgent, totals, waitFor, ZERO_TOTALS, startRedis } from './fixtures/harness.js'

t.test('agents on one Redis', async (t) => {
  const server = await startRedis(t)
  const check = inspect(t, server)
  t.beforeEach(async () => {
    await check.redis.flushall() // the private server this test started
  })

  t.test('two agents with different ids sum, and each leaves at once on stop', async (t) => {
    const a = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'node-a', HEARTBEAT_INTERVAL_MS: '5000' })
    const b = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'node-b', HEARTBEAT_INTERVAL_MS: '5000' })
    await putCounts(a.agent.url, '{"downloading":3,"muxing":1,"uploading":0}')
    await putCounts(b.agent.url, '{"downloading":2,"muxing":0,"uploading":5}')
    t.same((await waitFor(check.totals, totals(5, 1, 5), 300)).value, totals(5, 1, 5))
    t.equal((await check.store.readTotals()).liveNodes, 2)
    await a.agent.stop()
    t.same(await check.totals(), totals(2, 0, 5), 'node-a left the totals at once')
    t.same(await check.record('node-a'), {})
    await b.agent.stop()
    const { redisTimeMs, ...snapshot } = await check.store.readTotals()
    t.same(snapshot, { totals: ZERO_TOTALS, liveNodes: 0, freshNodes: 0, pruned: 0, dropped: 0 })
    t.ok(redisTimeMs > 0)
    for (const { lines } of [a, b]) {
      t.same(events(lines, 'replaced_previous_run'), [])
      t.same(events(lines, 'duplicate_node_id'), [])
      t.equal(events(lines, 'removed').length, 1)
    }
  })

  t.test('a restart after a crash replaces the old record: counted once, one warning, no duplicate alarm', async (t) => {
    const first = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'node-x', HEARTBEAT_INTERVAL_MS: '200' })
    await putCounts(first.agent.url, '{"downloading":3,"muxing":1,"uploading":0}')
    t.same((await waitFor(check.totals, totals(3, 1, 0), 300)).value, totals(3, 1, 0))
    await first.agent.loop.stop() // the crash: no more beats, and nobody removes the record
    const second = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'node-x', HEARTBEAT_INTERVAL_MS: '200' })
    t.same(await check.totals(), totals(0, 0, 0), 'the new run starts with zero counts and replaces the old record')
    await putCounts(second.agent.url, '{"downloading":1,"muxing":1,"uploading":1}')
    t.same((await waitFor(check.totals, totals(1, 1, 1), 300)).value, totals(1, 1, 1))
    await sleep(1000) // five more beats
    t.same(await check.totals(), totals(1, 1, 1), 'never counted twice')
    t.equal((await check.store.readTotals()).liveNodes, 1)
    const replaced = events(second.lines, 'replaced_previous_run')
    t.equal(replaced.length, 1)
    t.equal(replaced[0]?.level, WARN)
    t.equal(replaced[0]?.msg, 'replacing the record of a previous run of this node id')
    t.equal(replaced[0]?.other_instance, first.agent.instanceId)
    t.same(events(second.lines, 'duplicate_node_id'), [])
    t.same(second.lines.filter((line) => line.level >= ERROR), [])
    await first.agent.stop()
    t.same(await check.totals(), totals(1, 1, 1), "the old run's shutdown does not remove the new run's record")
    t.equal((await check.record('node-x')).instance, second.agent.instanceId)
  })

  t.test('a graceful restart gives no warning at all', async (t) => {
    const first = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'node-y', HEARTBEAT_INTERVAL_MS: '5000' })
    await putCounts(first.agent.url, '{"downloading":3,"muxing":1,"uploading":0}')
    await first.agent.stop()
    const second = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'node-y', HEARTBEAT_INTERVAL_MS: '5000' })
    await putCounts(second.agent.url, '{"downloading":1,"muxing":0,"uploading":0}')
    t.same((await waitFor(check.totals, totals(1, 0, 0), 300)).value, totals(1, 0, 0))
    t.same(second.lines.filter((line) => line.level >= WARN), [])
  })

  t.test('two live agents with one node id: each logs the duplicate at error level, once per 10 s', async (t) => {
    const a = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'dup', HEARTBEAT_INTERVAL_MS: '200' })
    const b = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'dup', HEARTBEAT_INTERVAL_MS: '200' })
    await sleep(1500)
    const message =
      'node id dup is already beating from another agent; both overwrite one record and the totals are wrong. Set TORNADO_NODE_ID to a unique id on each node'
    for (const [name, agent, other] of [
      ['first', a, b],
      ['second', b, a],
    ] as const) {
      const errors = agent.lines.filter((line) => line.level >= ERROR)
      t.equal(errors.length, 1, `${name} agent: one error line in 1.5 s, not one per beat`)
      t.equal(errors[0]?.event, 'duplicate_node_id')
      t.equal(errors[0]?.msg, message)
      t.equal(errors[0]?.other_instance, other.agent.instanceId)
    }
    t.equal(events(a.lines, 'replaced_previous_run').length, 0, 'the first agent found no record')
    t.equal(events(b.lines, 'replaced_previous_run').length, 1, "the second agent's first beat found the first's")
  })

  t.test('an agent clock five minutes off still counts: age is judged on the Redis clock', async (t) => {
    const skew = 5 * 60_000
    const behind = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'slow-clock', HEARTBEAT_INTERVAL_MS: '5000' }, { clock: () => Date.now() - skew })
    const ahead = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'fast-clock', HEARTBEAT_INTERVAL_MS: '5000' }, { clock: () => Date.now() + skew })
    const started = Date.now()
    await putCounts(behind.agent.url, '{"downloading":1,"muxing":2,"uploading":3}')
    await putCounts(ahead.agent.url, '{"downloading":10,"muxing":20,"uploading":30}')
    t.same((await waitFor(check.totals, totals(11, 22, 33), 300)).value, totals(11, 22, 33))
    t.equal((await check.store.readTotals()).liveNodes, 2)
    const slow = Number((await check.record('slow-clock')).agent_time_ms)
    const fast = Number((await check.record('fast-clock')).agent_time_ms)
    t.ok(Math.abs(slow - (started - skew)) < 1000, 'the agent clock is stored as sent')
    t.ok(Math.abs(fast - (started + skew)) < 1000)
  })

  t.test('without TORNADO_NODE_ID the node id is the hostname', async (t) => {
    const { agent } = await startTestAgent(t, server.url, { TORNADO_NODE_ID: '', HEARTBEAT_INTERVAL_MS: '5000' })
    t.equal(agent.nodeId, 'test-host')
    t.equal((await check.record('test-host')).instance, agent.instanceId)
  })

  t.test('a port in use: start fails naming AGENT_LISTEN, and nothing is written', async (t) => {
    const first = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'first', HEARTBEAT_INTERVAL_MS: '5000' })
    const port = new URL(first.agent.url).port
    const err = await startTestAgent(t, server.url, { TORNADO_NODE_ID: 'second', AGENT_LISTEN: `127.0.0.1:${port}` }).catch((e: Error) => e)
    t.ok(err instanceof Error)
    t.match((err as Error).message, new RegExp(`^cannot listen on 127\\.0\\.0\\.1:${port} \\(AGENT_LISTEN\\): listen EADDRINUSE`))
    t.same(await check.record('second'), {})
    t.equal((await check.store.readTotals()).liveNodes, 1)
  })
})
