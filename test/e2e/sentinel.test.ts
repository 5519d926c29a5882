import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { Redis } from 'ioredis'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { listeningUrl, startProcess, until } from './processes.js'

// Redis Sentinel as operators run it: a primary, a replica and a Sentinel; tornado-api and two tornado-agent
// processes find the primary through REDIS_SENTINELS; the primary dies, Sentinel promotes the replica, and the
// totals are exact again without restarting anything.
const API_KEY = 'sk_sentinel_e2e_4b7c91d2'
const MASTER_NAME = 'tornado-primary'

t.test('Redis Sentinel: exact totals, through a failover', async (t) => {
  const primary = await RedisServer.start(['--repl-diskless-sync-delay', '0'])
  t.teardown(() => primary.stop())
  const replica = await RedisServer.start(['--replicaof', '127.0.0.1', String(primary.port)])
  t.teardown(() => replica.stop())
  const replicaClient = replica.client()
  t.teardown(() => replicaClient.disconnect())
  await until('replica in sync', async () => ((await replicaClient.info('replication')).includes('master_link_status:up') ? true : undefined), 10_000)

  const dir = mkdtempSync(join(tmpdir(), 'tornado-sentinel-'))
  const sentinelPort = await freePort()
  const conf = join(dir, 'sentinel.conf')
  writeFileSync(
    conf,
    [
      `port ${sentinelPort}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${primary.port} 1`,
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 5000`,
      '',
    ].join('\n'),
  )
  const sentinel = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' })
  const killSentinel = () => sentinel.exitCode === null && sentinel.kill('SIGKILL')
  process.once('exit', killSentinel)
  process.once('SIGALRM', killSentinel)
  t.teardown(async () => {
    process.off('exit', killSentinel)
    process.off('SIGALRM', killSentinel)
    if (killSentinel()) await once(sentinel, 'exit')
    rmSync(dir, { recursive: true, force: true })
  })
  const sentinelClient = new Redis(sentinelPort, '127.0.0.1', { retryStrategy: () => 100 })
  sentinelClient.on('error', () => {})
  t.teardown(() => sentinelClient.disconnect())
  const primaryPort = async () => {
    const reply = (await sentinelClient.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string] | null
    return reply ? Number(reply[1]) : undefined
  }
  await until('Sentinel knows the replica', async () => {
    const replicas = (await sentinelClient.call('SENTINEL', 'REPLICAS', MASTER_NAME)) as unknown[]
    return replicas.length === 1 ? true : undefined
  }, 15_000)
  t.equal(await primaryPort(), primary.port)

  // Port 1 refuses: were REDIS_SENTINELS ignored, nothing would connect.
  const common = { REDIS_URL: 'redis://127.0.0.1:1', REDIS_SENTINELS: `127.0.0.1:${sentinelPort}`, REDIS_SENTINEL_NAME: MASTER_NAME }
  const api = startProcess(t, 'api', { ...common, TORNADO_API_KEYS: API_KEY, TOTALS_CACHE_MS: '0', PORT: '0', HOST: '127.0.0.1' })
  const apiUrl = await listeningUrl(api)
  const read = async () => {
    const response = await fetch(`${apiUrl}/dashboard/cluster`, { headers: { 'x-api-key': API_KEY } })
    return { status: response.status, body: (await response.json()) as unknown }
  }
  const expected = { status: 200, body: { total_downloading: 3, total_muxing: 5, total_uploading: 7 } }
  const exact = async () => {
    const got = await read()
    return JSON.stringify(got) === JSON.stringify(expected) ? got : undefined
  }

  const counts = [{ downloading: 1, muxing: 2, uploading: 3 }, { downloading: 2, muxing: 3, uploading: 4 }]
  const agentUrls: string[] = []
  const agents = await Promise.all(counts.map(async (body, i) => {
    const listen = `127.0.0.1:${await freePort()}`
    const agent = startProcess(t, 'agent', { ...common, TORNADO_NODE_ID: `sentinel-node-${i}`, AGENT_LISTEN: listen, HEARTBEAT_INTERVAL_MS: '500' })
    const url = `http://${listen}`
    agentUrls[i] = url
    await until(`agent ${i} answering`, async () => ((await fetch(`${url}/health`)).ok ? true : undefined), 20_000)
    const put = await fetch(`${url}/counts`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    t.equal(put.status, 204)
    return agent
  }))
  t.same(await until('exact totals through Sentinel', exact, 10_000), expected)
  t.match(agents[0]!.output(), `"redis_sentinels":"127.0.0.1:${sentinelPort} (${MASTER_NAME})"`, 'the agent logs where it looks')

  // The primary dies without a goodbye; Sentinel notices after 1 s and promotes the replica.
  const killedAt = Date.now()
  process.kill(primary.pid!, 'SIGKILL')
  await until('Sentinel promotes the replica', async () => ((await primaryPort()) === replica.port ? true : undefined), 20_000)
  const promotedMs = Date.now() - killedAt
  t.same(await until('exact totals again after the failover', exact, 10_000), expected)
  t.comment(`replica promoted ${promotedMs} ms after the primary died; totals exact ${Date.now() - killedAt} ms after`)
  // The agents write to the promoted replica: a change shows in the totals.
  const put = await fetch(`${agentUrls[0]}/counts`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"downloading":11,"muxing":2,"uploading":3}' })
  t.equal(put.status, 204)
  expected.body.total_downloading = 13
  t.same(await until('a change after the failover reaches the totals', exact, 5_000), expected)
  t.equal(api.child.exitCode, null, 'the API kept running')
  t.ok(agents.every((agent) => agent.child.exitCode === null), 'the agents kept running')
})
