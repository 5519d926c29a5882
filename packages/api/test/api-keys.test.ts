import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { builtBin } from '@tornado/shared/testing'
import t from 'tap'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { apiKeyRedisKeys, GENERATED_KEY_FORMAT } from '../src/api-keys.js'
import { runKeysCommand } from '../src/keys-cli.js'
import { get, heartbeat, KEY_A, startTestApi, totals, type TestApi } from './helper.js'

/** Runs `tornado-api keys ...` in-process against the test's Redis. */
async function keys(api: TestApi, ...argv: string[]) {
  let out = ''
  let err = ''
  const code = await runKeysCommand(argv, { REDIS_URL: api.redisServer.url }, { out: (s) => (out += s), err: (s) => (err += s) })
  return { code, out, err }
}

async function createKey(api: TestApi, name: string) {
  const res = await keys(api, 'create', '--name', name)
  t.equal(res.code, 0)
  const key = res.out.trim()
  t.match(key, GENERATED_KEY_FORMAT)
  const id = /^Created key ([0-9a-f]{16}) /.exec(res.err)?.[1]
  if (!id) throw new Error(`no id in ${res.err}`)
  return { key, id }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

t.test('keys made by the CLI open the API until revoked; revocation is seen within a second', async (t) => {
  const api = await startTestApi(t)
  await api.agentStore.writeHeartbeat(heartbeat('node-1', { downloading: 4, muxing: 1, uploading: 2 }))
  const cluster = (key: string) => get(`${api.url}/dashboard/cluster`, { 'x-api-key': key })

  const first = await createKey(api, 'dashboard wall')
  const second = await createKey(api, 'ops laptop')
  t.not(first.key, second.key)

  t.test('a created key works at once, the env keys still do', async (t) => {
    for (const key of [first.key, second.key, KEY_A]) t.same((await cluster(key)).body, totals(4, 1, 2))
  })

  t.test('Redis holds digests, ids, names and times, never a key', async (t) => {
    const { byDigest, record } = apiKeyRedisKeys('tornado')
    const dump = JSON.stringify([await api.raw.hgetall(byDigest), await api.raw.hgetall(record(first.id))])
    t.notOk(dump.includes(first.key) || dump.includes(second.key.slice(3)), 'no key text in Redis')
    t.equal(await api.raw.hget(byDigest, (await api.raw.hget(record(first.id), 'digest'))!), first.id)
  })

  t.test('list shows ids, names and creation times, never keys', async (t) => {
    const res = await keys(api, 'list')
    t.equal(res.code, 0)
    const lines = res.out.trim().split('\n')
    t.match(lines[0], /^ID +CREATED +NAME$/)
    t.match(lines[1], new RegExp(`^${first.id}  \\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z +dashboard wall$`))
    t.match(lines[2], new RegExp(`^${second.id}  .+ ops laptop$`))
    t.equal(lines.length, 3)
    t.notOk(res.out.includes(first.key) || res.out.includes(second.key), 'no key in the listing')
  })

  t.test('a session made with a Redis key works, and stops with the key', async (t) => {
    const post = await fetch(`${api.url}/dashboard/session`, { method: 'POST', headers: { 'x-api-key': second.key } })
    t.equal(post.status, 200)
    const cookie = (post.headers.get('set-cookie') ?? '').split(';')[0]!
    t.same((await get(`${api.url}/dashboard/cluster`, { cookie })).body, totals(4, 1, 2))
    t.equal((await keys(api, 'revoke', second.id)).code, 0)
    const revokedAt = Date.now()
    let res = await get(`${api.url}/dashboard/cluster`, { cookie })
    while (res.status === 200 && Date.now() - revokedAt < 2_000) {
      await sleep(50)
      res = await get(`${api.url}/dashboard/cluster`, { cookie })
    }
    t.same([res.status, res.body], [401, { error: 'Invalid or expired session' }])
    t.ok(Date.now() - revokedAt < 1_000, `session refused ${Date.now() - revokedAt} ms after the revoke`)
    t.same((await cluster(second.key)).body, { error: 'Invalid API Key' })
  })

  t.test('revoke: refused within a second, the other key untouched', async (t) => {
    const res = await keys(api, 'revoke', first.id)
    t.same(res, { code: 0, out: `Revoked key ${first.id}\n`, err: '' })
    const revokedAt = Date.now()
    let status = (await cluster(first.key)).status
    while (status === 200 && Date.now() - revokedAt < 2_000) {
      await sleep(50)
      status = (await cluster(first.key)).status
    }
    t.equal(status, 401)
    t.ok(Date.now() - revokedAt < 1_000, `refused ${Date.now() - revokedAt} ms after the revoke`)
    t.equal((await keys(api, 'list')).out.trim().split('\n').length, 1, 'only the header line left')
    t.equal((await cluster(KEY_A)).status, 200)
  })

  t.test('CLI errors', async (t) => {
    t.same(await keys(api, 'revoke', first.id), { code: 1, out: '', err: `tornado-api keys: no key with id "${first.id}"\n` })
    t.same(await keys(api, 'revoke', 'not-an-id'), { code: 1, out: '', err: 'tornado-api keys: no key with id "not-an-id"\n' })
    for (const argv of [['create'], ['list', 'x'], ['revoke'], ['frobnicate'], [], ['create', '--name', ''], ['create', '--name', 'tab\there'], ['list', '--bogus']]) {
      const res = await keys(api, ...argv)
      t.equal(res.code, 2, argv.join(' '))
      t.match(res.err, /^tornado-api keys: .+\n\nUsage: tornado-api keys create --name NAME/)
    }
  })

  t.test('no key ever appears in the log', async (t) => {
    const text = api.logs.text.join('\n')
    for (const key of [first.key, second.key]) t.notOk(text.includes(key))
  })
})

t.test('a bad REDIS_CLUSTER_NODES is named before any connection', async (t) => {
  let out = ''
  let err = ''
  const code = await runKeysCommand(['list'], { REDIS_CLUSTER_NODES: '127.0.0.1:70000' }, { out: (s) => (out += s), err: (s) => (err += s) })
  t.same({ code, out, err }, { code: 1, out: '', err: 'tornado-api keys: REDIS_CLUSTER_NODES="127.0.0.1:70000" is invalid: expected host:port, got "127.0.0.1:70000"\n' })
})

t.test('a REDIS_URL that does not parse is named, its password never shown (it came out in a TypeError stack)', async (t) => {
  for (const url of ['redis://:wrongPW@h:notaport', 'redis://:%ZZwrongPW@h:6379', 'redis://:wrongPW@h:6379/x']) {
    let out = ''
    let err = ''
    const code = await runKeysCommand(['list'], { REDIS_URL: url }, { out: (s) => (out += s), err: (s) => (err += s) })
    t.equal(code, 1, url.replace('wrongPW', '…'))
    t.match(err, /^tornado-api keys: REDIS_URL=\(value hidden\) is invalid: /)
    t.notMatch(`${out}${err}`, 'wrongPW')
  }
})

t.test('no Redis Cluster at REDIS_CLUSTER_NODES: exit 1 naming the seed nodes, no password', async (t) => {
  const nodes = `127.0.0.1:${await freePort()},127.0.0.1:${await freePort()}`
  let out = ''
  let err = ''
  const code = await runKeysCommand(['list'], { REDIS_URL: 'redis://:hunter2@127.0.0.1:1', REDIS_CLUSTER_NODES: nodes }, { out: (s) => (out += s), err: (s) => (err += s) })
  t.same({ code, out, err }, { code: 1, out: '', err: `tornado-api keys: Redis Cluster at ${nodes} is unavailable (Failed to refresh slots cache.)\n` })
})

t.test('REDIS_SENTINELS that cannot name the primary: exit 1 saying why', async (t) => {
  const list = async (env: Record<string, string>) => {
    let out = ''
    let err = ''
    const code = await runKeysCommand(['list'], { REDIS_URL: 'redis://:hunter2@127.0.0.1:1', ...env }, { out: (s) => (out += s), err: (s) => (err += s) })
    return { code, out, err }
  }
  const nobody = await freePort()
  // A plain Redis given as a Sentinel: its refusal of SENTINEL commands is what the operator needs to see.
  const notSentinel = await RedisServer.start()
  t.teardown(() => notSentinel.stop())
  // Together: each waits the CLI's 3 s for a primary that never comes.
  const [refused, got] = await Promise.all([
    list({ REDIS_SENTINELS: `127.0.0.1:${nobody}` }),
    list({ REDIS_SENTINELS: `127.0.0.1:${notSentinel.port}`, REDIS_SENTINEL_NAME: 'primary-1', REDIS_SENTINEL_PASSWORD: 'sentinel-secret' }),
  ])
  t.same(refused, {
    code: 1,
    out: '',
    err: `tornado-api keys: Redis primary "mymaster" via Sentinels at 127.0.0.1:${nobody} is unavailable (Sentinels: Connection is closed.)\n`,
  })
  t.same([got.code, got.out], [1, ''])
  t.match(got.err, new RegExp(`^tornado-api keys: Redis primary "primary-1" via Sentinels at 127\\.0\\.0\\.1:${notSentinel.port} is unavailable \\(Sentinels: ERR .*\\)\n$`))
  t.notOk(got.err.includes('hunter2') || got.err.includes('sentinel-secret'), 'no password')
})

t.test('Redis down: env keys work, a key shaped like a Redis key gets 503, others 401', async (t) => {
  const api = await startTestApi(t)
  const made = await createKey(api, 'soon unreachable')
  await api.redisServer.stop()
  await sleep(600) // past the key cache
  const session = (key: string) => api.app.inject({ method: 'POST', url: '/dashboard/session', headers: { 'x-api-key': key } })
  t.equal((await session(KEY_A)).statusCode, 200, 'an env key needs no Redis')
  const redisKey = await session(made.key)
  t.same([redisKey.statusCode, redisKey.json()], [503, { error: 'Redis unavailable' }])
  const other = await session('sk_wrong')
  t.same([other.statusCode, other.json()], [401, { error: 'Invalid API Key' }])
  await api.redisServer.restart() // empty: the key is gone with the data
  await sleep(600)
  const after = await session(made.key)
  t.same([after.statusCode, after.json()], [401, { error: 'Invalid API Key' }])
})

t.test('tornado-api keys as a process', async (t) => {
  const api = await startTestApi(t)
  const child = spawn(process.execPath, [builtBin(fileURLToPath(new URL('..', import.meta.url))), 'keys', 'create', '--name', 'spawned'], {
    env: { PATH: process.env.PATH, REDIS_URL: api.redisServer.url },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  t.teardown(() => child.kill('SIGKILL'))
  let out = ''
  let err = ''
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()))
  const [code] = await once(child, 'exit')
  t.equal(code, 0, err)
  t.match(out, /^sk_[A-Za-z0-9_-]{43}\n$/)
  t.match(err, /^Created key [0-9a-f]{16} \(spawned\)\. This is the only time the key is shown: store it now\.\n$/)
  t.equal((await get(`${api.url}/dashboard/cluster`, { 'x-api-key': out.trim() })).status, 200)
})
