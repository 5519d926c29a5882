import { execFile } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { hostname, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import t from 'tap'
import { createRedisClient, HeartbeatStore, waitForReady } from '@tornado/shared'
import { freePort, RedisServer } from '@tornado/shared/testing'
import { until, watchProcess } from './processes.js'

/*
 * What a release ships: `npm pack` of each package, installed together with `npm install -g` into an empty prefix,
 * must give working bins. The three tarballs resolve each other (@tornado/shared ^0.1.0) and the rest comes from the
 * registry (or npm's cache).
 */

const run = promisify(execFile)
const root = fileURLToPath(new URL('../../', import.meta.url))
const PACKAGES = ['shared', 'agent', 'api'] as const
const version = (JSON.parse(readFileSync(join(root, 'packages/api/package.json'), 'utf8')) as { version: string }).version

/** npm and the bins run without the variables npm and tap set for this run, or our own, leaking into them. */
const cleanEnv = Object.fromEntries(
  Object.entries(process.env).filter(
    ([name]) => !/^(npm_|NODE_OPTIONS$|TAP|REDIS_URL$|TORNADO_|STALE_AFTER_MS$|PORT$|HOST$|LOG_LEVEL$|METRICS_|AGENT_|HEARTBEAT_)/i.test(name),
  ),
)

const work = mkdtempSync(join(tmpdir(), 'tornado-pack-'))
t.teardown(() => rmSync(work, { recursive: true, force: true }))
const prefix = join(work, 'prefix')
const bin = (name: string) => join(prefix, 'bin', name)

interface PackResult {
  name: string
  filename: string
  files: { path: string }[]
}

let packed: PackResult[] = []

t.before(async () => {
  // CI builds before testing (and prepack would rebuild: skipped here, it costs seconds); a fresh checkout may not have built.
  if (PACKAGES.some((name) => !existsSync(join(root, `packages/${name}/dist/index.js`)))) {
    await run('npx', ['tsc', '-b'], { cwd: root, env: cleanEnv })
  }
  const workspaces = PACKAGES.flatMap((name) => ['-w', `@tornado/${name}`])
  const { stdout } = await run('npm', ['pack', ...workspaces, '--ignore-scripts', '--json', '--pack-destination', work], {
    cwd: root,
    env: cleanEnv,
    maxBuffer: 16 << 20,
  })
  packed = JSON.parse(stdout.slice(stdout.indexOf('['))) as PackResult[]
  await run(
    'npm',
    ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', ...packed.map((p) => join(work, p.filename))],
    { cwd: work, env: cleanEnv },
  )
})

t.test('each tarball holds the built code and what it reads at run time, and no tests', async (t) => {
  t.same(
    packed.map((p) => p.name),
    ['@tornado/shared', '@tornado/agent', '@tornado/api'],
  )
  for (const result of packed) {
    const paths = result.files.map((file) => file.path)
    t.ok(paths.includes('package.json'), `${result.name}: package.json`)
    t.ok(paths.includes('dist/index.js'), `${result.name}: dist/index.js`)
    t.same(
      paths.filter((path) => /(^|\/)test\/|\.test\.|tsbuildinfo/.test(path)),
      [],
      `${result.name}: no tests, no build state`,
    )
  }
  const api = packed.find((p) => p.name === '@tornado/api')!.files.map((file) => file.path)
  for (const path of ['bin/tornado-api.js', 'dist/bin.js', 'public/index.html', 'public/app.js', 'public/app.css']) t.ok(api.includes(path), `api: ${path}`)
  const agent = packed.find((p) => p.name === '@tornado/agent')!.files.map((file) => file.path)
  for (const path of ['bin/tornado-agent.js', 'dist/bin.js']) t.ok(agent.includes(path), `agent: ${path}`)
})

t.test('in a checkout, npm ci links both bins (their files exist before a build) and they run once built', async (t) => {
  for (const name of ['tornado-api', 'tornado-agent']) {
    const { stdout } = await run(join(root, 'node_modules/.bin', name), ['--version'], { env: cleanEnv })
    t.equal(stdout, `${version}\n`, `npx ${name} --version`)
  }
})

t.test('the installed bins answer --version and --help', async (t) => {
  t.equal((await run(bin('tornado-api'), ['--version'], { env: cleanEnv })).stdout, `${version}\n`)
  t.equal((await run(bin('tornado-agent'), ['--version'], { env: cleanEnv })).stdout, `${version}\n`)
  const apiHelp = (await run(bin('tornado-api'), ['--help'], { env: cleanEnv })).stdout
  t.match(apiHelp, /^Usage: tornado-api /)
  for (const line of [/REDIS_URL +.+ \(default: redis:\/\/127\.0\.0\.1:6379\)\n/, /TORNADO_API_KEYS +.+ \(required\)\n/, /METRICS_ENABLED +.+ \(default: true\)\n/]) {
    t.match(apiHelp, line)
  }
  const agentHelp = (await run(bin('tornado-agent'), ['--help'], { env: cleanEnv })).stdout
  t.match(agentHelp, /^Usage: tornado-agent /)
  t.match(agentHelp, /HEARTBEAT_INTERVAL_MS .*\(default: 1000\)\n/)
})

t.test('the installed API serves its page, /ready and /metrics, and stops on SIGTERM', async (t) => {
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  const api = watchProcess(t, bin('tornado-api'), [], { ...cleanEnv, REDIS_URL: redisServer.url, TORNADO_API_KEYS: 'sk_packaging_test', PORT: '0', HOST: '127.0.0.1' })
  const url = await until('installed tornado-api listening', async () => /"msg":"Server listening at (http:\/\/[^"]+)"/.exec(api.output())?.[1], 20_000)

  const page = await fetch(`${url}/`)
  t.equal(page.status, 200)
  t.match(await page.text(), /<html/i)
  const ready = await fetch(`${url}/ready`)
  t.equal(ready.status, 200)
  t.equal(await ready.text(), '{"status":"ready"}')
  const metrics = await fetch(`${url}/metrics`)
  t.equal(metrics.status, 200)
  t.match(await metrics.text(), /\ntornado_api_live_nodes 0\n/)

  api.child.kill('SIGTERM')
  t.equal(await api.exited, 0)
})

/** KEY=VALUE lines of an environment file as systemd reads them; with uncomment, `#KEY=value` lines too. */
function readEnvFile(text: string, { uncomment = false } = {}): Record<string, string> {
  const vars: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const match = (uncomment ? /^#?([A-Z_]+)=(.+)$/ : /^([A-Z_]+)=(.*)$/).exec(line.trim())
    if (match) vars[match[1]!] = match[2]!
  }
  return vars
}

t.test('the agent as the README installs it on a node: two tarballs, the unit, the example environment file', async (t) => {
  // The README's steps, with a temporary folder in place of /opt/tornado and /etc/tornado.
  const opt = join(work, 'opt-tornado')
  const tarball = (name: string) => join(work, packed.find((p) => p.name === `@tornado/${name}`)!.filename)
  await run('npm', ['install', '-g', '--prefix', opt, '--prefer-offline', '--no-audit', '--no-fund', tarball('shared'), tarball('agent')], {
    cwd: work,
    env: cleanEnv,
  })
  t.equal((await run(join(opt, 'bin', 'tornado-agent'), ['--version'], { env: cleanEnv })).stdout, `${version}\n`)
  t.notOk(existsSync(join(opt, 'bin', 'tornado-api')), 'the node gets the agent only')

  const unit = readFileSync(join(root, 'deploy/systemd/tornado-agent.service'), 'utf8')
  for (const line of ['ExecStart=/opt/tornado/bin/tornado-agent', 'User=tornado', 'EnvironmentFile=/etc/tornado/agent.env', 'Restart=on-failure', 'KillSignal=SIGTERM']) {
    t.match(unit, new RegExp(`^${line.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$`, 'm'), line)
  }
  const redisServer = await RedisServer.start()
  t.teardown(() => redisServer.stop())
  const listen = `127.0.0.1:${await freePort()}`
  // The example file with every variable it shows switched on, then this node's values.
  const example = readEnvFile(readFileSync(join(root, 'deploy/systemd/agent.env.example'), 'utf8'), { uncomment: true })
  t.same(Object.keys(example).sort(), ['AGENT_LISTEN', 'HEARTBEAT_INTERVAL_MS', 'LOG_LEVEL', 'REDIS_URL', 'STALE_AFTER_MS', 'TORNADO_NODE_ID', 'TORNADO_PREFIX'])
  const envFile = join(work, 'agent.env')
  const envText = Object.entries({ ...example, REDIS_URL: redisServer.url, TORNADO_NODE_ID: 'packaged-node', AGENT_LISTEN: listen })
    .map(([name, value]) => `${name}=${value}`)
    .join('\n')
  writeFileSync(envFile, `${envText}\n`)
  const unitFile = join(work, 'tornado-agent.service')
  writeFileSync(unitFile, unit.replaceAll('/opt/tornado', opt).replace('/etc/tornado/agent.env', envFile))
  const verify = await run('systemd-analyze', ['verify', unitFile], { env: cleanEnv }).catch((err: { code: number; stderr: string }) => err)
  t.same({ code: 'code' in verify ? verify.code : 0, stderr: verify.stderr }, { code: 0, stderr: '' }, 'systemd-analyze verify: no error, no warning')

  // Run as the unit runs it: the bin, with only the file's variables of ours.
  const agent = watchProcess(t, join(opt, 'bin', 'tornado-agent'), [], { ...cleanEnv, ...readEnvFile(readFileSync(envFile, 'utf8')) })
  const redis = createRedisClient(redisServer.url)
  t.teardown(() => redis.disconnect())
  await waitForReady(redis, 5000)
  const store = new HeartbeatStore(redis, { prefix: example.TORNADO_PREFIX!, shards: 1 }, Number(example.STALE_AFTER_MS))
  await until('the installed agent answering', async () => ((await fetch(`http://${listen}/health`)).ok ? true : undefined), 20_000)
  const put = await fetch(`http://${listen}/counts`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"downloading":2,"muxing":1,"uploading":3}' })
  t.equal(put.status, 204)
  const expected = { total_downloading: 2, total_muxing: 1, total_uploading: 3 }
  t.same(await until('its heartbeat in Redis', async () => {
    const { totals } = await store.readTotals()
    return JSON.stringify(totals) === JSON.stringify(expected) ? totals : undefined
  }, 2000), expected)
  t.equal((await store.readNode('packaged-node'))?.hostname, hostname(), 'a record under its node id, with the host name')

  agent.child.kill('SIGTERM')
  t.equal(await agent.exited, 0, 'stops cleanly on SIGTERM')
  t.same((await store.readTotals()).totals, { total_downloading: 0, total_muxing: 0, total_uploading: 0 }, 'and its node left the totals')
  t.notMatch(agent.output(), /change-me/, 'no password from the file in its log')
})
