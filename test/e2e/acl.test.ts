import t from 'tap'
import { Redis } from 'ioredis'
import { pino } from 'pino'
import { createRedisClient, createRedisConnection, HeartbeatStore, shardKeys, shardOf, waitForReady } from '@tornado/shared'
import { RedisServer } from '@tornado/shared/testing'
import { loadConfig, startAgent, type Agent } from '@tornado/agent'
import { aclRules, aclUser, ACL_ROLES, buildApp, loadApiConfig, runKeysCommand, type AclRole } from '@tornado/api'
import { startRedisCluster } from './redis-cluster.js'

// Agent, API and keys CLI against a private redis-server, each with the ACL user `tornado-api acl` prints:
// everything they do passes (ACL LOG stays empty), and what the rules forbid is refused with NOPERM.
const PREFIX = 'fleet-a'
const SHARDS = 3
const layout = { prefix: PREFIX, shards: SHARDS }
const STALE_AFTER_MS = 5000
const ENV_KEY = 'sk_acl_env_key_0123456789'
const PASSWORDS: Record<AclRole, string> = { agent: 'agent-pw-5f1c9e', api: 'api-pw-0b7d21', admin: 'admin-pw-c3a8e4' }
const KEY_REFUSED = 'NOPERM this user has no permissions to access one of the keys used as arguments'
const refused = (command: string) => `NOPERM this user has no permissions to run the '${command}' command`
const SCRIPT_CALL_REFUSED = "ERR The user executing the script can't run this command or subcommand script: <sha>, on @user_script:1."
const totals = (d: number, m: number, u: number) => ({ total_downloading: d, total_muxing: m, total_uploading: u })

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const value = await probe()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** Redis 7.2 and later know CLIENT SETINFO, which ioredis sends on connect: the rules must allow it there. */
async function hasClientSetinfo(client: Redis): Promise<boolean> {
  const [, major, minor] = /redis_version:(\d+)\.(\d+)/.exec(await client.info('server'))!
  return Number(major) * 100 + Number(minor) >= 702
}

/** The error a command gets, or 'OK'-like success as a string: refusals are compared exactly. */
async function outcome(run: () => Promise<unknown>): Promise<string> {
  try {
    return `ok ${JSON.stringify(await run())}`
  } catch (err) {
    return (err as Error).message.replace(/script: [0-9a-f]{40}/, 'script: <sha>')
  }
}

t.test('agent, API and admin run with their ACL users and are refused everything else', async (t) => {
  const server = await RedisServer.start()
  t.teardown(() => server.stop())
  const raw = server.client()
  t.teardown(() => raw.disconnect())
  const clientSetinfo = await hasClientSetinfo(raw)
  for (const role of ACL_ROLES) {
    const user = aclUser(role, PREFIX, { clientSetinfo })
    t.equal(await raw.call('ACL', 'SETUSER', user.name, ...aclRules(user, PASSWORDS[role])), 'OK', `${role} user created`)
  }
  const urlOf = (role: AclRole) => `redis://${PREFIX}-${role}:${PASSWORDS[role]}@127.0.0.1:${server.port}`
  const clients: Redis[] = []
  const clientOf = async (role: AclRole) => {
    const client = createRedisClient(urlOf(role))
    client.on('error', () => {})
    clients.push(client)
    t.ok(await waitForReady(client, 3000), `${role} client connects`)
    return client
  }
  t.teardown(() => clients.forEach((client) => client.disconnect()))
  await raw.call('ACL', 'LOG', 'RESET')

  // The admin user creates an API key with the keys CLI.
  const out: string[] = []
  const err: string[] = []
  const io = { out: (text: string) => out.push(text), err: (text: string) => err.push(text) }
  t.equal(await runKeysCommand(['create', '--name', 'ops'], { REDIS_URL: urlOf('admin'), TORNADO_PREFIX: PREFIX }, io), 0, 'keys as admin')
  const createdKey = out.join('').trim()
  t.match(createdKey, /^sk_[A-Za-z0-9_-]{43}$/)

  const apiLogs: string[] = []
  const config = loadApiConfig({
    REDIS_URL: urlOf('api'),
    TORNADO_PREFIX: PREFIX,
    TORNADO_SHARDS: String(SHARDS),
    TORNADO_API_KEYS: ENV_KEY,
    TOTALS_CACHE_MS: '0',
    STALE_AFTER_MS: String(STALE_AFTER_MS),
  })
  const app = await buildApp({ config, logger: { level: 'warn', stream: { write: (line) => apiLogs.push(line) } } })
  t.teardown(() => app.close())
  await app.listen({ port: 0, host: '127.0.0.1' })
  const apiUrl = `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
  const getJson = async (path: string, key = createdKey) => {
    const response = await fetch(`${apiUrl}${path}`, { headers: { 'x-api-key': key } })
    return { status: response.status, body: (await response.json()) as unknown }
  }
  const clusterIs = (expected: unknown) => async () => {
    const { status, body } = await getJson('/dashboard/cluster')
    return status === 200 && JSON.stringify(body) === JSON.stringify(expected) ? body : undefined
  }

  const agentLogs: string[] = []
  const agents = new Map<string, Agent>()
  const startNode = async (nodeId: string) => {
    const agentConfig = loadConfig(
      {
        REDIS_URL: urlOf('agent'),
        AGENT_LISTEN: '127.0.0.1:0',
        TORNADO_NODE_ID: nodeId,
        TORNADO_PREFIX: PREFIX,
        TORNADO_SHARDS: String(SHARDS),
        HEARTBEAT_INTERVAL_MS: '200',
        STALE_AFTER_MS: String(STALE_AFTER_MS),
      },
      { hostname: 'test-host' },
    )
    const logger = pino({ level: 'warn' }, { write: (line: string) => agentLogs.push(line) })
    const agent = await startAgent(agentConfig, { logger, readHostInfo: async () => ({ hostname: `${nodeId}.test`, ip: '10.0.0.1' }) })
    t.teardown(() => agent.stop())
    agents.set(nodeId, agent)
    return agent
  }
  const putCounts = async (nodeId: string, downloading: number, muxing: number, uploading: number) => {
    const response = await fetch(`${agents.get(nodeId)!.url}/counts`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ downloading, muxing, uploading }),
    })
    t.equal(response.status, 204)
  }
  // Two shards in play, so every script runs on more than one hash tag.
  t.not(shardOf('node-a', SHARDS), shardOf('node-b', SHARDS))
  const keysOf = (nodeId: string) => shardKeys(layout, shardOf(nodeId, SHARDS))

  await startNode('node-a')
  await startNode('node-b')
  await putCounts('node-a', 3, 2, 1)
  await putCounts('node-b', 4, 0, 5)
  t.same(await until('totals 7/2/6 through the admin-made key', clusterIs(totals(7, 2, 6))), totals(7, 2, 6))
  t.same(await getJson('/dashboard/cluster', ENV_KEY), { status: 200, body: totals(7, 2, 6) })

  await t.test('a stale node is pruned by the API read', async (t) => {
    const agentStore = new HeartbeatStore(await clientOf('agent'), layout, STALE_AFTER_MS)
    const beat = { nodeId: 'node-gone', instanceId: 'gone-1', hostname: 'gone.test', ip: '10.0.0.9', agentTimeMs: 1 }
    await agentStore.writeHeartbeat({ ...beat, counts: { downloading: 10, muxing: 10, uploading: 10 } })
    t.same(await getJson('/dashboard/cluster'), { status: 200, body: totals(17, 12, 16) })
    const gone = keysOf('node-gone')
    const [seconds] = await raw.time()
    t.equal(await raw.zadd(gone.nodes, 'XX', (Number(seconds) - 60) * 1000, 'node-gone'), 0, 'aged by a minute')
    t.same(await getJson('/dashboard/cluster'), { status: 200, body: totals(7, 2, 6) })
    t.equal(await raw.zscore(gone.nodes, 'node-gone'), null)
    t.equal(await raw.exists(`${gone.nodePrefix}node-gone`), 0)
  })

  await t.test('garbage under the prefix is recounted by both users', async (t) => {
    // The agent's beat meets garbage totals in its shard and recounts them.
    const a = keysOf('node-a')
    await raw.hset(a.totals, 'downloading', 'garbage')
    await putCounts('node-a', 1, 1, 1)
    await until('the beat recounted', async () => ((await raw.hget(a.totals, 'downloading')) === '1' ? true : undefined))
    // The API's read meets garbage totals in another shard, and the node list a member without a record.
    await raw.hset(keysOf('node-b').totals, 'muxing', '-5')
    t.same(await getJson('/dashboard/cluster'), { status: 200, body: totals(5, 1, 6) })
    await raw.zadd(a.nodes, Date.now(), 'ghost')
    await raw.set(`${a.nodePrefix}ghost`, 'not a record')
    const nodes = await getJson('/dashboard/nodes')
    t.equal(nodes.status, 200)
    t.same((nodes.body as { nodes: { id: string }[] }).nodes.map((node) => node.id), ['node-a', 'node-b'])
    t.equal(await raw.zscore(a.nodes, 'ghost'), null)
    t.same(await getJson('/dashboard/cluster'), { status: 200, body: totals(5, 1, 6) })
  })

  await t.test('a graceful stop removes the node', async (t) => {
    await agents.get('node-b')!.stop()
    t.same(await getJson('/dashboard/cluster'), { status: 200, body: totals(1, 1, 1) })
    t.equal(await raw.zscore(keysOf('node-b').nodes, 'node-b'), null)
  })

  await t.test('the keys CLI lists and revokes as admin; the API sees the revocation', async (t) => {
    out.length = 0
    err.length = 0
    t.equal(await runKeysCommand(['list'], { REDIS_URL: urlOf('admin'), TORNADO_PREFIX: PREFIX }, io), 0, 'keys as admin')
    const listed = /^ID {16}CREATED {19}NAME\n([0-9a-f]{16}) {2}\S+ +ops\n$/.exec(out.join(''))
    t.ok(listed, 'one key listed, by id and name')
    t.equal(await runKeysCommand(['revoke', listed![1]!], { REDIS_URL: urlOf('admin'), TORNADO_PREFIX: PREFIX }, io), 0, 'keys as admin')
    const refusedKey = await until('the API refuses the revoked key', async () => {
      const { status, body } = await getJson('/dashboard/cluster')
      return status === 401 ? body : undefined
    })
    t.same(refusedKey, { error: 'Invalid API Key' })
    t.same(await getJson('/dashboard/cluster', ENV_KEY), { status: 200, body: totals(1, 1, 1) })
  })

  t.same(await raw.call('ACL', 'LOG'), [], 'no command of ours was refused')
  t.same(
    agentLogs.map((line) => JSON.parse(line) as { level: number; event: string; dropped?: number }).map(({ level, event, dropped }) => ({ level, event, dropped })),
    [{ level: 40, event: 'garbage_dropped', dropped: 1 }],
    'the agents warned only of the garbage totals a beat recounted',
  )
  t.same(
    apiLogs.map((line) => JSON.parse(line) as { level: number; msg: string; dropped?: number }).map(({ level, msg, dropped }) => ({ level, msg, dropped })),
    [
      { level: 40, msg: 'dropped garbage heartbeat records from the store', dropped: 1 },
      { level: 40, msg: 'dropped garbage heartbeat records from the store', dropped: 1 },
    ],
    'the API warned only of the garbage totals and the ghost it dropped',
  )

  await t.test('the agent user is refused everything outside the heartbeat keys', async (t) => {
    const agent = await clientOf('agent')
    const byDigest = `{${PREFIX}:keys}:by-digest`
    t.same(
      {
        setOutside: await outcome(() => agent.set('elsewhere', 'x')),
        otherFleet: await outcome(() => agent.zadd('{tornado:0}:nodes', 1, 'n')),
        readApiKeys: await outcome(() => agent.hkeys(byDigest)),
        scriptReadsApiKeys: await outcome(() => agent.eval(`return redis.call('HKEYS', '${byDigest}')`, 0)),
        scriptWithApiKey: await outcome(() => agent.eval(`return redis.call('HKEYS', KEYS[1])`, 1, byDigest)),
        flushall: await outcome(() => agent.flushall()),
        keys: await outcome(() => agent.keys('*')),
        config: await outcome(() => agent.config('GET', 'maxmemory')),
        hsetRecord: await outcome(() => agent.hset(`${keysOf('node-a').nodePrefix}node-z`, 'f', 'v')),
      },
      {
        setOutside: KEY_REFUSED,
        otherFleet: KEY_REFUSED,
        readApiKeys: refused('hkeys'),
        scriptReadsApiKeys: SCRIPT_CALL_REFUSED,
        scriptWithApiKey: KEY_REFUSED,
        flushall: refused('flushall'),
        keys: refused('keys'),
        config: refused('config|get'),
        hsetRecord: KEY_REFUSED,
      },
    )
  })

  await t.test('the API user is refused writing records and API keys', async (t) => {
    const api = await clientOf('api')
    const record = `${keysOf('node-a').nodePrefix}node-a`
    const byDigest = `{${PREFIX}:keys}:by-digest`
    t.same(
      {
        setRecord: await outcome(() => api.set(record, '9|9|9|1|1|i|ip|h')),
        hsetRecord: await outcome(() => api.hset(record, 'f', 'v')),
        addNode: await outcome(() => api.zadd(keysOf('node-a').nodes, 1, 'node-x')),
        writeApiKey: await outcome(() => api.hset(byDigest, 'digest', 'id')),
        deleteApiKey: await outcome(() => api.del(`{${PREFIX}:keys}:key:0123456789abcdef`)),
        scriptWritesApiKey: await outcome(() => api.eval(`return redis.call('HSET', KEYS[1], 'd', 'i')`, 1, byDigest)),
        scriptSetsRecord: await outcome(() => api.eval(`return redis.call('SET', KEYS[1], 'x')`, 1, record)),
        readsApiKeys: await outcome(() => api.hkeys(byDigest).then(() => 'read')),
        flushall: await outcome(() => api.flushall()),
      },
      {
        setRecord: refused('set'),
        hsetRecord: KEY_REFUSED,
        addNode: refused('zadd'),
        writeApiKey: KEY_REFUSED,
        deleteApiKey: KEY_REFUSED,
        scriptWritesApiKey: KEY_REFUSED,
        scriptSetsRecord: SCRIPT_CALL_REFUSED,
        readsApiKeys: 'ok "read"',
        flushall: refused('flushall'),
      },
    )
  })

  await t.test('the admin user is refused the heartbeat keys', async (t) => {
    const admin = await clientOf('admin')
    t.same(
      {
        readRecord: await outcome(() => admin.get(`${keysOf('node-a').nodePrefix}node-a`)),
        totals: await outcome(() => admin.hgetall(keysOf('node-a').totals)),
        script: await outcome(() => admin.eval('return 1', 0)),
        flushall: await outcome(() => admin.flushall()),
      },
      { readRecord: refused('get'), totals: KEY_REFUSED, script: refused('eval'), flushall: refused('flushall') },
    )
  })

  await t.test('the refusals are in ACL LOG, for operators to audit', async (t) => {
    const entries = (await raw.call('ACL', 'LOG', '128')) as string[][]
    const seen = entries.map((entry) => {
      const field = (name: string) => entry[entry.indexOf(name) + 1]
      return `${field('username')} ${field('reason')} ${field('context')} ${field('object')}`
    })
    const a = keysOf('node-a')
    const expected = [
      'admin command toplevel eval',
      'admin command toplevel flushall',
      'admin command toplevel get',
      `admin key toplevel ${a.totals}`,
      'agent command lua hkeys',
      'agent command toplevel config|get',
      'agent command toplevel flushall',
      'agent command toplevel hkeys',
      'agent command toplevel keys',
      'agent key toplevel elsewhere',
      `agent key toplevel ${a.nodePrefix}node-z`,
      `agent key toplevel {${PREFIX}:keys}:by-digest`,
      'agent key toplevel {tornado:0}:nodes',
      'api command lua set',
      'api command toplevel flushall',
      'api command toplevel set',
      'api command toplevel zadd',
      `api key toplevel ${a.nodePrefix}node-a`,
      `api key toplevel {${PREFIX}:keys}:by-digest`,
      `api key toplevel {${PREFIX}:keys}:key:0123456789abcdef`,
    ]
    t.same(seen.sort(), expected.map((line) => `${PREFIX}-${line}`).sort())
  })

  await t.test('what ACLs cannot stop: a script command run directly on the heartbeat keys', async (t) => {
    // Redis checks a script's calls with the caller's rules, so the agent holds SET and the API DEL on the records.
    const agent = await clientOf('agent')
    const api = await clientOf('api')
    const key = `${keysOf('node-a').nodePrefix}node-direct`
    t.equal(await outcome(() => agent.set(key, 'not a record')), 'ok "OK"')
    t.equal(await outcome(() => api.del(key)), 'ok 1')
  })
})

t.test('Redis Cluster: agent and API users with the cluster rules, on every node', async (t) => {
  const ports = await startRedisCluster(t)
  await Promise.all(ports.map(async (port) => {
    const direct = new Redis(port, '127.0.0.1')
    try {
      const clientSetinfo = await hasClientSetinfo(direct)
      for (const role of ['agent', 'api'] as const) {
        const user = aclUser(role, PREFIX, { cluster: true, clientSetinfo })
        await direct.call('ACL', 'SETUSER', user.name, ...aclRules(user, PASSWORDS[role]))
      }
      await direct.call('ACL', 'LOG', 'RESET')
    } finally {
      direct.disconnect()
    }
  }))
  const clusterNodes = ports.map((port) => ({ host: '127.0.0.1', port }))
  // The agent's store over the Cluster client, as an agent given REDIS_CLUSTER_NODES uses it.
  const agentRedis = createRedisConnection({ url: `redis://${PREFIX}-agent:${PASSWORDS.agent}@127.0.0.1:1`, clusterNodes })
  agentRedis.on('error', () => {})
  t.teardown(() => agentRedis.disconnect())
  t.ok(await waitForReady(agentRedis, 10_000), 'the agent user connects to the cluster')
  const store = new HeartbeatStore(agentRedis, layout, STALE_AFTER_MS)

  const config = loadApiConfig({
    REDIS_URL: `redis://${PREFIX}-api:${PASSWORDS.api}@127.0.0.1:1`,
    REDIS_CLUSTER_NODES: ports.map((port) => `127.0.0.1:${port}`).join(','),
    TORNADO_PREFIX: PREFIX,
    TORNADO_SHARDS: String(SHARDS),
    TORNADO_API_KEYS: ENV_KEY,
    TOTALS_CACHE_MS: '0',
    LOG_LEVEL: 'silent',
  })
  const app = await buildApp({ config })
  t.teardown(() => app.close())
  const read = async (url: string) => {
    const response = await app.inject({ method: 'GET', url, headers: { 'x-api-key': ENV_KEY } })
    return { status: response.statusCode, body: response.json() as unknown }
  }

  for (let i = 0; i < 6; i++) {
    const counts = { downloading: i, muxing: 1, uploading: 2 * i }
    await store.writeHeartbeat({ nodeId: `node-${i}`, instanceId: `i-${i}`, hostname: `h${i}`, ip: '10.0.0.1', counts, agentTimeMs: 1 })
  }
  t.same(new Set(Array.from({ length: 6 }, (_, i) => shardOf(`node-${i}`, SHARDS))).size, SHARDS, 'every shard in use')
  t.same(await read('/dashboard/cluster'), { status: 200, body: totals(15, 6, 30) })
  t.equal(await store.removeNode('node-5', 'i-5'), true)
  t.same(await read('/dashboard/cluster'), { status: 200, body: totals(10, 5, 20) })
  const nodes = await read('/dashboard/nodes')
  t.same((nodes.body as { nodes: { id: string }[] }).nodes.map((node) => node.id), ['node-0', 'node-1', 'node-2', 'node-3', 'node-4'])
  t.same(await read('/ready'), { status: 200, body: { status: 'ready' } })

  const logs = await Promise.all(ports.map(async (port) => {
    const direct = new Redis(port, '127.0.0.1')
    try {
      return await direct.call('ACL', 'LOG')
    } finally {
      direct.disconnect()
    }
  }))
  t.same(logs, [[], [], []], 'no node refused a command of ours')
})
