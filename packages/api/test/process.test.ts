import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import { createRedisClient, HeartbeatStore, waitForReady } from '@tornado/shared'
import { builtBin, childEnv, RedisServer } from '@tornado/shared/testing'
import { ApiEnv } from '../src/index.js'
import { get, heartbeat, totals } from './helper.js'

const API_KEY = 'sk_process_test_5f8c1e2a9b'
const SECOND_KEY = 'sk_process_test_second_77'
const REDIS_PASSWORD = 'pr0cess-redis-pw'
const OUR_VARIABLES = /^(REDIS_URL|TORNADO_.*|STALE_AFTER_MS|PORT|HOST|LOG_LEVEL|METRICS_ENABLED)$/

interface RunningApi {
  child: ChildProcess
  output: () => string
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; elapsedMs: number }>
}

const packageRoot = fileURLToPath(new URL('..', import.meta.url))

/** Runs the built bin (dist/bin.js), with only the given variables of ours set. */
function spawnApi(t: Test, env: Record<string, string>, args: string[] = []): RunningApi {
  const child = spawn(process.execPath, [builtBin(packageRoot), ...args], {
    env: { ...childEnv(process.env, (name) => OUR_VARIABLES.test(name)), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()))
  let signalledAt = 0
  const originalKill = child.kill.bind(child)
  child.kill = (signal?: NodeJS.Signals | number) => {
    signalledAt ||= Date.now()
    return originalKill(signal)
  }
  const exit = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
    elapsedMs: Date.now() - signalledAt,
  }))
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      originalKill('SIGKILL')
      await exit
    }
  })
  return { child, output: () => output, exit }
}

/** Waits for the "Server listening at <url>" log line and returns the url. */
async function listeningUrl(api: RunningApi, timeoutMs = 15_000): Promise<string> {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    const match = /"msg":"Server listening at (http:\/\/127\.0\.0\.1:\d+)"/.exec(api.output())
    if (match?.[1]) return match[1]
    if (api.child.exitCode !== null) throw new Error(`tornado-api exited early:\n${api.output()}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error(`tornado-api did not listen within ${timeoutMs} ms:\n${api.output()}`)
}

const logEntries = (output: string) =>
  output
    .split('\n')
    .filter((line) => line.startsWith('{'))
    .map((line) => JSON.parse(line) as Record<string, unknown>)

t.test('--help lists every variable with its default', async (t) => {
  const api = spawnApi(t, {}, ['--help'])
  t.equal((await api.exit).code, 0)
  const text = api.output()
  t.match(text, /^Usage: tornado-api \[--help\] \[--version\]\n/)
  for (const name of Object.keys(ApiEnv.properties)) t.match(text, new RegExp(`^  ${name} +\\S.* \\((default: .+|required)\\)$`, 'm'), name)
  for (const line of [
    /REDIS_URL +a redis:\/\/ .+ \(default: redis:\/\/127\.0\.0\.1:6379\)\n/,
    /TORNADO_PREFIX +.+ \(default: tornado\)\n/,
    /TORNADO_SHARDS +.+ \(default: 1\)\n/,
    /STALE_AFTER_MS +.+ \(default: 30000\)\n/,
    /REDIS_CLUSTER_NODES +.+ \(default: unset\)\n/,
    /REDIS_SENTINELS +.+ \(default: unset\)\n/,
    /REDIS_SENTINEL_NAME +.+ \(default: mymaster\)\n/,
    /REDIS_SENTINEL_PASSWORD +.+ \(default: unset\)\n/,
    /TORNADO_API_KEYS +comma-separated API keys .+ \(required\)\n/,
    /TOTALS_CACHE_MS +.+ \(default: 250\)\n/,
    /ONLINE_WITHIN_MS +.+ \(default: 5000\)\n/,
    /AUTH_FAILURE_LIMIT +.+ \(default: 20\)\n/,
    /PORT +.+ \(default: 3000\)\n/,
    /HOST +.+ \(default: 0\.0\.0\.0\)\n/,
    /METRICS_ENABLED +.+ \(default: true\)\n/,
    /LOG_LEVEL +.+ \(default: info\)\n/,
    /GET \/ready \(200 only while Redis answers\) and GET \/metrics \(Prometheus; no key; METRICS_ENABLED=0: off\)/,
  ]) {
    t.match(text, line)
  }
})

t.test('--version prints the package version', async (t) => {
  const api = spawnApi(t, {}, ['--version'])
  t.equal((await api.exit).code, 0)
  const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
  t.equal(api.output(), `${pkg.version}\n`)
})

t.test('a bad variable stops start-up: exit 1, one message naming it, no stack trace', async (t) => {
  const badPort = spawnApi(t, { TORNADO_API_KEYS: API_KEY, PORT: 'eighty' })
  t.equal((await badPort.exit).code, 1)
  t.equal(
    badPort.output(),
    'tornado-api: PORT="eighty" is invalid: a TCP port from 0 to 65535 (0: any free port)\n' +
      'Run tornado-api --help for every variable and its default.\n',
  )
})

t.test('a real process: serves over HTTP, stops on SIGTERM with exit 0, never logs a key', async (t) => {
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  // Set after start: RedisServer's readiness probe does not authenticate.
  const admin = redisServer.client()
  await admin.config('SET', 'requirepass', REDIS_PASSWORD)
  admin.disconnect()
  const redisUrl = `redis://:${REDIS_PASSWORD}@127.0.0.1:${redisServer.port}`
  const agentRedis = createRedisClient(redisUrl)
  t.teardown(() => agentRedis.disconnect())
  t.equal(await waitForReady(agentRedis, 5_000), true)
  const agentStore = new HeartbeatStore(agentRedis, { prefix: 'proc', shards: 1 }, 30_000)
  await agentStore.writeHeartbeat(heartbeat('node-a', { downloading: 6, muxing: 3, uploading: 2 }))
  await agentStore.writeHeartbeat(heartbeat('node-b', { downloading: 1, muxing: 0, uploading: 4 }))

  const api = spawnApi(t, {
    REDIS_URL: redisUrl,
    TORNADO_PREFIX: 'proc',
    TORNADO_API_KEYS: `${API_KEY}, ${SECOND_KEY}`,
    PORT: '0',
    HOST: '127.0.0.1',
  })
  const url = await listeningUrl(api)

  const ok = await get(`${url}/dashboard/cluster`, { 'x-api-key': API_KEY })
  t.equal(ok.status, 200)
  t.equal(ok.text, '{"total_downloading":7,"total_muxing":3,"total_uploading":6}')
  t.same((await get(`${url}/dashboard/cluster`, { 'x-api-key': SECOND_KEY })).body, totals(7, 3, 6))
  const wrong = await get(`${url}/dashboard/cluster`, { 'x-api-key': 'sk_guessed_wrong' })
  t.equal(wrong.status, 401)
  t.same(wrong.body, { error: 'Invalid API Key' })
  t.same((await get(`${url}/health`)).body, { status: 'ok' })

  const samePort = spawnApi(t, { REDIS_URL: redisUrl, TORNADO_API_KEYS: API_KEY, PORT: new URL(url).port, HOST: '127.0.0.1' })
  t.equal((await samePort.exit).code, 1, 'a second API on the same port exits 1')
  const port = new URL(url).port
  t.match(logEntries(samePort.output()).find((entry) => String(entry.msg).startsWith('cannot listen')), {
    level: 60,
    msg: `cannot listen on 127.0.0.1:${port} (HOST, PORT): listen EADDRINUSE: address already in use 127.0.0.1:${port}`,
    reason: /EADDRINUSE/,
  })
  t.match(samePort.output(), `\ntornado-api: cannot listen on 127.0.0.1:${port} (HOST, PORT): `, 'and on stderr, naming the variables')
  t.notOk(samePort.output().includes(REDIS_PASSWORD))

  api.child.kill('SIGTERM')
  const exit = await api.exit
  t.equal(exit.code, 0, 'exit code 0')
  t.ok(exit.elapsedMs < 3_000, `stopped ${exit.elapsedMs} ms after SIGTERM`)

  const output = api.output()
  t.notOk(output.includes(API_KEY), 'the first key is never logged')
  t.notOk(output.includes(SECOND_KEY), 'the second key is never logged')
  t.notOk(output.includes('sk_guessed_wrong'), 'a rejected key is never logged')
  t.notOk(output.includes(REDIS_PASSWORD), 'the Redis password is never logged')
  const entries = logEntries(output)
  t.equal(entries.length, output.trim().split('\n').length, 'every output line is one JSON log entry')
  const started = entries.find((entry) => entry.msg === 'tornado-api starting')
  t.same(started?.config, {
    redisUrl: `redis://:***@127.0.0.1:${redisServer.port}`,
    prefix: 'proc',
    shards: 1,
    staleAfterMs: 30_000,
    totalsCacheMs: 250,
    onlineWithinMs: 5_000,
    apiKeys: 2,
    authFailureLimit: 20,
    host: '127.0.0.1',
    port: 0,
    logLevel: 'info',
    metricsEnabled: true,
  })
  t.ok(entries.some((entry) => entry.msg === 'stopped'), 'logs that it stopped')
})

t.test('SIGINT stops it too; with Redis paused it still exits 0 within a few seconds', async (t) => {
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  const api = spawnApi(t, { REDIS_URL: redisServer.url, TORNADO_API_KEYS: API_KEY, PORT: '0', HOST: '127.0.0.1' })
  await listeningUrl(api)
  redisServer.pause()
  api.child.kill('SIGINT')
  const exit = await api.exit
  redisServer.resume()
  t.equal(exit.code, 0)
  t.ok(exit.elapsedMs < 4_000, `stopped ${exit.elapsedMs} ms after SIGINT`)
})

t.test('a second signal exits at once', async (t) => {
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  const api = spawnApi(t, { REDIS_URL: redisServer.url, TORNADO_API_KEYS: API_KEY, PORT: '0', HOST: '127.0.0.1' })
  await listeningUrl(api)
  redisServer.pause() // the graceful stop now waits on Redis (up to its 1 s command timeout)
  api.child.kill('SIGTERM')
  await new Promise((resolve) => setTimeout(resolve, 200))
  api.child.kill('SIGTERM')
  const exit = await api.exit
  redisServer.resume()
  // A graceful stop would have exited 0; the timing is loose because the machine may be busy compiling other tests.
  t.equal(exit.code, 1, 'forced exit')
  t.ok(exit.elapsedMs < 3_000, `exited ${exit.elapsedMs} ms after the first signal`)
  t.ok(logEntries(api.output()).some((entry) => entry.msg === 'second signal: exiting without waiting'))
})
